fn main() {
    let cli = orch::cli::parse();
    orch::init_tracing(cli.global.verbose);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("cannot start the async runtime");
    let code = match runtime.block_on(orch::cli::run(cli)) {
        Ok(()) => 0,
        Err(error) => {
            orch::print_error(&error);
            error.code()
        }
    };
    std::process::exit(code);
}
