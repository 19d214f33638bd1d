//! The URL prefix's syntax: one normal form — empty for none, else `/seg/seg` with no trailing
//! slash, made only of characters a URL path may carry unencoded — so the same string is the
//! decoded `SCRIPT_NAME` and the start of an encoded URL. For `--prefix` here, for Django's
//! `FORCE_SCRIPT_NAME` and a trusted `X-Forwarded-Prefix` in `http/proxy.rs`; splitting paths
//! at a prefix is `http/prefix.rs`'s.

/// `s` in normal form (trailing slashes dropped; `""` and `"/"` are no prefix), or why it is
/// not a usable prefix.
pub fn normalize(s: &str) -> Result<&str, &'static str> {
    let trimmed = s.trim_end_matches('/');
    if trimmed.is_empty() {
        return if s.is_empty() || s.starts_with('/') {
            Ok("")
        } else {
            Err("it must start with '/'")
        };
    }
    if !trimmed.starts_with('/') {
        return Err("it must start with '/'");
    }
    if trimmed.contains('%') {
        return Err("it must not be percent-encoded; write the characters themselves");
    }
    if !trimmed.bytes().all(path_char) {
        return Err("it may only contain letters, digits, '/' and -._~!$&'()*+,;=:@");
    }
    for segment in trimmed[1..].split('/') {
        match segment {
            "" => return Err("it must not contain '//'"),
            "." | ".." => return Err("it must not contain '.' or '..' segments"),
            _ => {}
        }
    }
    Ok(trimmed)
}

/// RFC 3986 `pchar` minus percent-encoding, plus `/`.
fn path_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_forms() {
        let cases: &[(&str, Result<&str, &str>)] = &[
            ("", Ok("")),
            ("/", Ok("")),
            ("//", Ok("")),
            ("/app", Ok("/app")),
            ("/app/", Ok("/app")),
            ("/app//", Ok("/app")),
            ("/a/b-c_d.e~f", Ok("/a/b-c_d.e~f")),
            ("/v1;x=1", Ok("/v1;x=1")),
            ("app", Err("it must start with '/'")),
            ("app/", Err("it must start with '/'")),
            (
                "/a%20b",
                Err("it must not be percent-encoded; write the characters themselves"),
            ),
            ("/a/../b", Err("it must not contain '.' or '..' segments")),
            ("/..", Err("it must not contain '.' or '..' segments")),
            ("/a/./b", Err("it must not contain '.' or '..' segments")),
            ("/a//b", Err("it must not contain '//'")),
            (
                "/a b",
                Err("it may only contain letters, digits, '/' and -._~!$&'()*+,;=:@"),
            ),
            (
                "/a?b",
                Err("it may only contain letters, digits, '/' and -._~!$&'()*+,;=:@"),
            ),
            (
                "/é",
                Err("it may only contain letters, digits, '/' and -._~!$&'()*+,;=:@"),
            ),
            (
                "/<x>",
                Err("it may only contain letters, digits, '/' and -._~!$&'()*+,;=:@"),
            ),
        ];
        for (s, want) in cases {
            assert_eq!(normalize(s), *want, "{s:?}");
        }
        // `..` inside a segment name is only a name.
        assert_eq!(normalize("/a..b"), Ok("/a..b"));
    }
}
