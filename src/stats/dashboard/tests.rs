//! The dashboard's tests: what the page says for the fixture snapshots, and that every
//! string from a client is escaped.

use super::{clock, display_bin, more, render, uptime};
use crate::stats::fixtures::{empty, filled, with_workers};

fn clean(page: &str) {
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert!(page.ends_with("</html>\n"));
    assert!(page.contains(r#"<meta http-equiv="refresh" content="5">"#));
    assert!(page.contains(r#"<link rel="icon" href="data:,">"#));
    for bad in ["NaN", "inf", "<script", "http://", "https://"] {
        assert!(!page.contains(bad), "{bad} in the page");
    }
    assert_eq!(page.matches("<svg").count(), page.matches("</svg>").count());
    assert_eq!(
        page.matches("<table").count(),
        page.matches("</table>").count()
    );
}

#[test]
fn an_empty_snapshot_renders_cleanly() {
    let page = render(&empty());
    clean(&page);
    // Five timelines, no data lines, no histograms.
    assert_eq!(page.matches("<svg").count(), 5);
    assert!(!page.contains(r#"class="series"#));
    assert!(page.contains("No requests in flight."));
    assert!(page.contains("No requests in the last 5 minutes."));
}

#[test]
fn a_filled_snapshot_has_every_chart_and_table() {
    let s = filled();
    let page = render(&s);
    clean(&page);
    for needle in [
        r#"<figure id="rate-15m">"#,
        r#"class="series rate""#,
        r#"class="series errors""#,
        r#"class="series p50""#,
        r#"class="series p90""#,
        r#"class="series p99""#,
        r#"class="series busy""#,
        r#"class="series threads""#,
        r#"class="series asleep""#,
        r#"class="series queue""#,
        r#"<table id="slowest">"#,
        r#"<table id="in-flight">"#,
        "api:users",
        "/api/users/7",
        "3 / 8",
        "1 h 31 min",
        "50 MiB",
    ] {
        assert!(page.contains(needle), "missing {needle}");
    }
    // Three views with requests: three histograms, five timelines.
    assert_eq!(page.matches(r#"<svg class="histogram""#).count(), 3);
    assert_eq!(page.matches("<svg").count(), 8);
    // The slowest table is ordered by p99: every view has the same one here, so by label.
    let slowest = page.split(r#"<table id="slowest">"#).nth(1).unwrap();
    let first = slowest.find("api:users").unwrap();
    assert!(first < slowest.find("static").unwrap());
}

#[test]
fn a_master_shows_its_workers() {
    let page = render(&filled());
    assert!(!page.contains("Workers") && !page.contains("<th>worker</th>"));
    let page = render(&with_workers());
    clean(&page);
    let table = page.split(r#"<table id="workers">"#).nth(1).unwrap();
    let table = table.split("</table>").next().unwrap();
    assert_eq!(table.matches("<tr>").count(), 4);
    for needle in [
        r#"<td>101</td><td class="l">ready</td><td>2 h 46 min</td><td>9000</td><td>9</td>"#,
        r#"<td class="l">draining</td>"#,
        r#"<td class="l">starting</td>"#,
        "<td>3 / 8</td><td>70 MiB</td><td>0</td>",
        "<td>1</td></tr>",
    ] {
        assert!(table.contains(needle), "missing {needle} in {table}");
    }
    // The in-flight table says which worker runs each request; memory is every process's.
    assert!(page.contains("<th>worker</th>") && page.contains("<td>4243</td>"));
    assert!(page.contains("200 MiB") && page.contains("resident, 4 processes"));
}

#[test]
fn counts_of_one_are_singular() {
    let mut s = filled();
    s.gauges.in_flight = 1;
    s.views[1].histogram = vec![(0.012, 1)];
    let page = render(&s);
    assert!(page.contains("<b>1</b><small>request</small>"));
    assert!(page.contains("<small>1 request · p50"));
    assert!(page.contains("<small>48 requests · p50"));
    assert!(!page.contains(" 1 requests"));
    let page = render(&with_workers());
    assert!(page.contains("resident, 4 processes"));
}

#[test]
fn the_rows_left_out_are_counted() {
    let mut page = String::new();
    more(&mut page, 26, 25, ("view", "views"));
    more(&mut page, 27, 25, ("view", "views"));
    more(&mut page, 25, 25, ("view", "views"));
    assert_eq!(
        page,
        r#"<p class="more">1 more view in /stats.json.</p><p class="more">2 more views in /stats.json.</p>"#
    );
}

#[test]
fn the_slowest_views_count_4xx_beside_5xx() {
    let page = render(&filled());
    let table = page.split(r#"<table id="slowest">"#).nth(1).unwrap();
    assert!(table.contains("<th>max</th><th>4xx</th><th>5xx</th><th>cancelled</th>"));
    // The fixture's 5-minute window: 4 client errors, 3 server errors, 3 cancelled.
    assert!(
        table.contains("<td>200 ms</td><td>4</td><td>3</td><td>3</td>"),
        "{table}"
    );
}

#[test]
fn the_ratio_gauge_says_when_nothing_waited() {
    let page = render(&filled());
    assert!(page.contains("<small>work : sleep</small><b>2.5</b><small>last minute</small>"));
    let page = render(&empty());
    assert!(page.contains(
        r#"<small>work : sleep</small><b class="none">no async waits</b><small>in the last minute</small>"#
    ));
    assert!(!page.contains("–"));
}

#[test]
fn client_strings_are_escaped() {
    let page = render(&filled());
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;&amp;"));
    assert!(page.contains("&lt;script&gt;alert(2)&lt;/script&gt;"));
    assert!(page.contains("/x?&lt;img src=x onerror=alert(3)&gt;"));
    assert!(page.contains("&lt;b&gt;id&lt;/b&gt;"));
    assert!(page.contains("P&quot;OST"));
    assert!(!page.contains("<img") && !page.contains("<b>id"));
}

#[test]
fn odd_values_do_not_break_the_page() {
    let mut s = filled();
    s.time = f64::NAN;
    s.uptime = f64::INFINITY;
    s.gauges.work_sleep_ratio = Some(f64::NAN);
    s.seconds[3].processing.p99 = f64::INFINITY;
    s.seconds[4].busy = f64::NAN;
    s.views[0].histogram.push((f64::NAN, 3));
    s.views[0].windows[1].processing.p99 = f64::NAN;
    s.in_flight[0].elapsed = -1.0;
    clean(&render(&s));
}

#[test]
fn display_bins() {
    for (upper, bin) in [
        (0.000_01, 0),
        (0.0001, 0),
        (0.001, 3),
        (0.0011, 4),
        (0.012, 8),
        (1.0, 15),
        (1000.0, 23),
        (0.0, 0),
    ] {
        assert_eq!(display_bin(upper), bin, "{upper}");
    }
}

#[test]
fn a_failed_reload_shows_a_banner_with_its_reason_escaped() {
    assert!(!render(&filled()).contains("class=\"stale\""));
    let page = render(&crate::stats::fixtures::stale());
    assert!(page.contains("class=\"stale\""), "no banner");
    assert!(page.contains("run code older than the code on disk"));
    assert!(page.contains("SyntaxError: &lt;script&gt;alert(4)&lt;/script&gt;"));
    assert!(!page.contains("<script>alert(4)"));
}

#[test]
fn clock_and_uptime() {
    assert_eq!(clock(1_700_000_000.0), "22:13:20");
    assert_eq!(uptime(42.9), "42 s");
    assert_eq!(uptime(3.0 * 86_400.0 + 7200.0), "3 d 2 h");
}
