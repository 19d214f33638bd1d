//! `--access-log-format`: `combined`, `json`, `dev`, or a template of `{field}`s. Writing a
//! line in the format is `http/access.rs`'s.
//!
//! Parsed once at start-up, so an unknown field is an error (exit 2) naming it, not a line
//! with a hole in it.

/// A parsed `--access-log-format`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    Combined,
    Json,
    /// Development: method, path, status, size and time, as short as `runserver`'s line.
    Dev,
    Template(Vec<Piece>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Text(String),
    Field(Field),
}

/// A template field. Times are milliseconds with three decimals, or microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Client,
    Time,
    Request,
    Method,
    Path,
    Query,
    Protocol,
    Status,
    BytesIn,
    BytesOut,
    DurationMs,
    DurationUs,
    QueueMs,
    ProcessingMs,
    AsleepMs,
    RequestId,
    Label,
    Cancelled,
    Referer,
    UserAgent,
}

/// Every field by its template name (also the JSON format's keys).
pub const FIELDS: [(&str, Field); 20] = [
    ("client", Field::Client),
    ("time", Field::Time),
    ("request", Field::Request),
    ("method", Field::Method),
    ("path", Field::Path),
    ("query", Field::Query),
    ("protocol", Field::Protocol),
    ("status", Field::Status),
    ("bytes_in", Field::BytesIn),
    ("bytes_out", Field::BytesOut),
    ("duration_ms", Field::DurationMs),
    ("duration_us", Field::DurationUs),
    ("queue_ms", Field::QueueMs),
    ("processing_ms", Field::ProcessingMs),
    ("asleep_ms", Field::AsleepMs),
    ("request_id", Field::RequestId),
    ("label", Field::Label),
    ("cancelled", Field::Cancelled),
    ("referer", Field::Referer),
    ("user_agent", Field::UserAgent),
];

impl Format {
    /// Parse the option's value (`None`: the default, combined). The error says what is wrong
    /// with the value.
    pub fn parse(value: Option<&str>) -> Result<Self, String> {
        match value {
            None | Some("combined") => Ok(Format::Combined),
            Some("json") => Ok(Format::Json),
            Some("dev") => Ok(Format::Dev),
            Some(template) => parse_template(template).map(Format::Template),
        }
    }
}

fn parse_template(template: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut rest = template;
    let mut any_field = false;
    while let Some(i) = rest.find(['{', '}']) {
        text.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix("{{") {
            text.push('{');
            rest = after;
        } else if let Some(after) = tail.strip_prefix("}}") {
            text.push('}');
            rest = after;
        } else if tail.starts_with('}') {
            return Err("a '}' without its '{' (write '}}' for a literal one)".to_owned());
        } else {
            let end = tail
                .find('}')
                .ok_or_else(|| "a '{' without its '}' (write '{{' for a literal one)".to_owned())?;
            let name = &tail[1..end];
            let field = FIELDS
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, f)| *f)
                .ok_or_else(|| {
                    let names: Vec<&str> = FIELDS.iter().map(|(n, _)| *n).collect();
                    format!(
                        "unknown field '{{{name}}}'; the fields are {}, or use 'combined', 'json' or 'dev'",
                        names.join(", ")
                    )
                })?;
            if !text.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut text)));
            }
            pieces.push(Piece::Field(field));
            any_field = true;
            rest = &tail[end + 1..];
        }
    }
    text.push_str(rest);
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    if !any_field {
        return Err("expected 'combined', 'json', 'dev' or a template with {fields}".to_owned());
    }
    Ok(pieces)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse() {
        assert_eq!(Format::parse(None), Ok(Format::Combined));
        assert_eq!(Format::parse(Some("json")), Ok(Format::Json));
        assert_eq!(
            Format::parse(Some("{method} {{x}} {status}ms")),
            Ok(Format::Template(vec![
                Piece::Field(Field::Method),
                Piece::Text(" {x} ".into()),
                Piece::Field(Field::Status),
                Piece::Text("ms".into()),
            ]))
        );
    }

    #[test]
    fn bad_templates_say_why() {
        for (value, why) in [
            ("{nope}", "unknown field '{nope}'"),
            ("{status", "without its '}'"),
            ("status}", "without its '{'"),
            ("plain", "expected 'combined'"),
        ] {
            let err = Format::parse(Some(value)).unwrap_err();
            assert!(err.contains(why), "{value}: {err}");
        }
    }
}
