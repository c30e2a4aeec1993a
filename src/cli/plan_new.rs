//! `orch plan new RECIPE NAME ...`: the recipe from its options, the
//! engine writes the files, this prints what was written and what to run
//! next.

use crate::cli::Context;
use crate::cli::args::RecipeCommand;
use crate::engine::plan_new::plan_new;
use crate::engine::workspace::Folders;
use crate::error::Result;
use crate::recipe::Recipe;
use crate::recipe::add_foreign_key::AddForeignKey;
use crate::recipe::add_unique::AddUnique;
use crate::recipe::change_type::ChangeType;
use crate::recipe::drop_column::DropColumn;
use crate::recipe::rename_column::RenameColumn;
use crate::recipe::replace_columns::ReplaceColumns;
use crate::recipe::set_not_null::SetNotNull;

/// The recipe a command line asks for, and the plan's name.
fn recipe(command: &RecipeCommand) -> Result<(Box<dyn Recipe>, &str)> {
    Ok(match command {
        RecipeCommand::SetNotNull {
            name,
            table,
            column,
            fill,
            recent,
        } => (
            Box::new(SetNotNull::new(
                table,
                column,
                fill.as_deref(),
                recent.created_at.as_deref(),
            )?),
            name,
        ),
        RecipeCommand::AddForeignKey {
            name,
            table,
            column,
            references,
            recent,
        } => (
            Box::new(AddForeignKey::new(
                table,
                column,
                references,
                recent.created_at.as_deref(),
            )?),
            name,
        ),
        RecipeCommand::AddUnique {
            name,
            table,
            columns,
        } => (Box::new(AddUnique::new(table, columns)?), name),
        RecipeCommand::DropColumn {
            name,
            table,
            column,
            type_name,
            recent,
        } => (
            Box::new(DropColumn::new(
                table,
                column,
                type_name.as_deref(),
                recent.created_at.as_deref(),
            )?),
            name,
        ),
        RecipeCommand::RenameColumn {
            name,
            table,
            column,
            to,
            type_name,
            recent,
        } => (
            Box::new(RenameColumn::new(
                table,
                column,
                to,
                type_name.as_deref(),
                recent.created_at.as_deref(),
            )?),
            name,
        ),
        RecipeCommand::ChangeType {
            name,
            table,
            column,
            to,
            using,
            from,
            recent,
        } => (
            Box::new(ChangeType::new(
                table,
                column,
                to,
                using.as_deref(),
                from.as_deref(),
                recent.created_at.as_deref(),
            )?),
            name,
        ),
        RecipeCommand::ReplaceColumns {
            name,
            table,
            columns,
            with,
            using,
            reverse,
            old_types,
            recent,
        } => (
            Box::new(ReplaceColumns::new(
                table,
                columns,
                with,
                using,
                reverse.as_deref(),
                old_types.as_deref(),
                recent.created_at.as_deref(),
            )?),
            name,
        ),
    })
}

/// The command line as the plan's header shows it, without the
/// connection string (it may hold a password).
fn command_line() -> String {
    let mut words = vec!["orch".to_string()];
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--database-url" {
            args.next();
            continue;
        }
        if arg.starts_with("--database-url=") {
            continue;
        }
        let plain = !arg.is_empty()
            && arg
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.,=/:".contains(c));
        let doubled = !arg.contains(['"', '$', '`', '\\', '!']);
        words.push(match (plain, doubled) {
            (true, _) => arg,
            (false, true) => format!("\"{arg}\""),
            (false, false) => format!("'{}'", arg.replace('\'', "'\\''")),
        });
    }
    words.join(" ")
}

pub async fn run(ctx: &Context, command: RecipeCommand) -> Result<()> {
    let (recipe, plan) = recipe(&command)?;
    let folders = Folders {
        migrations: &ctx.migrations_dir,
        format: ctx.format,
        plans: &ctx.plans_dir,
    };
    let settings = ctx.connection()?;
    let application_name = ctx.application_name("plan new");
    let connection = settings
        .is_configured()
        .then_some((&settings, application_name.as_str()));
    let written = plan_new(
        folders,
        recipe.as_ref(),
        plan,
        &command_line(),
        connection,
        chrono::Utc::now(),
    )
    .await?;
    if !written.with_database {
        println!(
            "no database configured (--database-url, DATABASE_URL or PGHOST/PGDATABASE): generated from the options alone"
        );
    }
    println!("wrote {}", written.plan.display());
    for path in &written.migrations {
        println!("wrote {}", path.display());
    }
    for note in &written.notes {
        println!("note: {note}");
    }
    println!("next: review the files, then `orch check {plan}` and `orch advance {plan}`");
    Ok(())
}
