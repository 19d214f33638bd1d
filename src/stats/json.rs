//! `/stats.json`: a [`Snapshot`] as JSON, exactly as its fields are declared.
//!
//! The field names and their documentation are `snapshot.rs`'s; this file only serializes.
//! Serving the text is `admin.rs`'s business.

use super::Snapshot;

/// The text for `/stats.json`: compact (pipe it through `jq` to read it). A value that is not
/// a finite number (none should be) becomes `null`, as `serde_json` writes it.
pub fn render(s: &Snapshot) -> String {
    // Plain structs with string keys and derived `Serialize`: nothing can fail.
    serde_json::to_string(s).expect("a Snapshot always serializes")
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::render;
    use crate::stats::fixtures::{empty, filled, with_workers};

    #[test]
    fn parses_back_with_every_key() {
        let v: Value = serde_json::from_str(&render(&filled())).unwrap();
        for key in [
            "version",
            "pid",
            "time",
            "uptime",
            "rss_bytes",
            "gauges",
            "totals",
            "views",
            "in_flight",
            "seconds",
            "minutes",
            "workers",
            "stale",
        ] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        assert_eq!(v["gauges"]["busy_threads"], 3);
        assert_eq!(v["gauges"]["work_sleep_ratio"], 2.5);
        let view = &v["views"][0];
        assert_eq!(view["label"], "api:users");
        assert_eq!(view["windows"][1]["minutes"], 5);
        assert_eq!(view["windows"][1]["client_errors"], 4);
        assert_eq!(view["windows"][1]["errors"], 3);
        assert_eq!(view["windows"][1]["processing"]["p99"], 0.09);
        assert_eq!(view["methods"][0]["method"], "GET");
        assert_eq!(view["methods"][0]["processing"]["buckets"][4], 40);
        assert_eq!(view["histogram"][1], serde_json::json!([0.012, 40]));
        assert_eq!(v["in_flight"][0]["state"], "asleep");
        assert_eq!(v["seconds"].as_array().unwrap().len(), 300);
        // Strings from clients come back as they were.
        assert_eq!(v["in_flight"][1]["path"], "/x?<img src=x onerror=alert(3)>");
    }

    #[test]
    fn a_failed_reload_is_reported_with_its_reason() {
        let v: Value = serde_json::from_str(&render(&filled())).unwrap();
        assert_eq!(v["stale"], Value::Null);
        let v: Value = serde_json::from_str(&render(&crate::stats::fixtures::stale())).unwrap();
        assert_eq!(v["stale"]["since"], 1_699_999_400.0);
        assert!(v["stale"]["reason"]
            .as_str()
            .unwrap()
            .starts_with("cannot import"));
    }

    #[test]
    fn a_master_lists_its_workers() {
        let v: Value = serde_json::from_str(&render(&filled())).unwrap();
        assert_eq!(v["workers"], serde_json::json!([]));
        assert_eq!(v["in_flight"][0]["pid"], 4243);
        let v: Value = serde_json::from_str(&render(&with_workers())).unwrap();
        assert_eq!(
            v["workers"][0],
            serde_json::json!({
                "pid": 101,
                "state": "ready",
                "started_unix": 1_699_990_000.5,
                "requests": 9000,
                "requests_per_second": 9.0,
                "busy_threads": 3,
                "threads": 8,
                "rss_bytes": 62_914_560,
                "restarts": 0,
            })
        );
        assert_eq!(v["workers"][2]["state"], "starting");
    }

    #[test]
    fn an_empty_snapshot_has_null_ratio_and_empty_lists() {
        let v: Value = serde_json::from_str(&render(&empty())).unwrap();
        assert_eq!(v["gauges"]["work_sleep_ratio"], Value::Null);
        assert_eq!(v["views"], serde_json::json!([]));
        assert_eq!(v["seconds"], serde_json::json!([]));
    }
}
