//! Reading a text file orch parses (plans, migrations): UTF-8, with a
//! byte-order mark accepted and dropped, and a precise position when the
//! bytes are not UTF-8.

/// The text of `bytes`, or (line, column, message) where they stop being
/// UTF-8 (1-based, columns counted in bytes).
pub fn decode(bytes: Vec<u8>) -> Result<String, (usize, usize, String)> {
    let bytes = match bytes.strip_prefix(b"\xEF\xBB\xBF") {
        Some(rest) => rest.to_vec(),
        None => bytes,
    };
    String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = 1 + valid.iter().filter(|&&b| b == b'\n').count();
        let column = 1 + valid.iter().rev().take_while(|&&b| b != b'\n').count();
        let byte = e.as_bytes()[valid.len()];
        (
            line,
            column,
            format!("not valid UTF-8: byte 0x{byte:02X} starts no UTF-8 character (save the file as UTF-8)"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_with_or_without_a_bom_and_where_it_breaks() {
        assert_eq!(decode(b"a\nb".to_vec()).unwrap(), "a\nb");
        assert_eq!(decode(b"\xEF\xBB\xBFplan: p".to_vec()).unwrap(), "plan: p");
        let (line, column, message) = decode(b"ok\nab\xFFc".to_vec()).unwrap_err();
        assert_eq!((line, column), (2, 3));
        assert!(message.contains("byte 0xFF"), "{message}");
    }
}
