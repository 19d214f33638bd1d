//! The dashboard's charts, drawn as inline SVG on the server: line charts over time and bar
//! charts, with their axes, captions and legends; and the escaping and number formatting the
//! page shares.
//!
//! Owns geometry and colours only. Which data goes into which chart, and the page around them,
//! is `dashboard.rs`'s business. Every string is escaped here before it is written, and every
//! number is checked to be finite, so no data can make a path say `NaN`.
//!
//! Each series has one colour, used by nothing else on the page; a browser test can therefore
//! count a series' pixels in a screenshot. Legend swatches are drawn at 60% opacity, so their
//! pixels are never exactly a series' colour, and the x axis is drawn over the series, so a
//! series that stays at zero leaves no pixels of its colour either.

use std::fmt::Write;

/// Series colours (CSS class after `series`, colour):
///
/// | class | colour | what |
/// |---|---|---|
/// | `rate` | `#2563eb` blue | requests per second |
/// | `errors` | `#dc2626` red | 5xx responses per second |
/// | `p50` | `#16a34a` green | median processing time |
/// | `p90` | `#d97706` amber | 90th percentile |
/// | `p99` | `#9333ea` purple | 99th percentile |
/// | `threads` | `#475569` slate, dashed | live worker threads |
/// | `busy` | `#0891b2` cyan | threads holding a request |
/// | `asleep` | `#db2777` pink | threads asleep in async waits |
/// | `queue` | `#ca8a04` dark yellow | requests waiting for a thread |
///
/// Histogram bars (`class="bar"`) are teal, `#0d9488`.
pub(super) mod colour {
    pub const RATE: &str = "#2563eb";
    pub const ERRORS: &str = "#dc2626";
    pub const P50: &str = "#16a34a";
    pub const P90: &str = "#d97706";
    pub const P99: &str = "#9333ea";
    pub const THREADS: &str = "#475569";
    pub const BUSY: &str = "#0891b2";
    pub const ASLEEP: &str = "#db2777";
    pub const QUEUE: &str = "#ca8a04";
    pub const BAR: &str = "#0d9488";
}

const GRID: &str = "#e2e8f0";
const AXIS: &str = "#94a3b8";

/// What the y axis counts, which decides how its ticks read and the least range it shows
/// (so an idle chart has a sensible scale rather than a zero-height one).
#[derive(Clone, Copy)]
pub(super) enum Unit {
    /// Per second.
    Rate,
    Seconds,
    Count,
}

impl Unit {
    fn least_top(self) -> f64 {
        match self {
            Unit::Rate | Unit::Count => 1.0,
            Unit::Seconds => 0.01,
        }
    }

    fn tick(self, v: f64) -> String {
        match self {
            Unit::Rate => format!("{}/s", number(v)),
            Unit::Seconds => duration(v),
            Unit::Count => number(v),
        }
    }
}

/// One line of a [`LineChart`]: points `(x, y)` in data units, `None` for a gap.
pub(super) struct Series {
    pub name: &'static str,
    pub class: &'static str,
    pub colour: &'static str,
    pub dashed: bool,
    pub points: Vec<Option<(f64, f64)>>,
}

/// A line chart over time, with its caption and legend.
pub(super) struct LineChart<'a> {
    pub id: &'a str,
    pub title: &'a str,
    pub unit: Unit,
    /// The x range (Unix seconds), oldest first.
    pub x: (f64, f64),
    /// Labelled x positions.
    pub x_ticks: &'a [(f64, &'a str)],
    pub series: Vec<Series>,
}

// Geometry of a line chart, in pixels; arbitrary, chosen to fit two charts side by side on
// a laptop screen with room for tick labels such as "12.5 ms".
const W: f64 = 600.0;
const H: f64 = 180.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 14.0;
const TOP: f64 = 8.0;
const BOTTOM: f64 = 22.0;

impl LineChart<'_> {
    pub fn render(&self) -> String {
        let (x0, x1) = match self.x {
            (x0, x1) if x0.is_finite() && x1.is_finite() && x1 > x0 => (x0, x1),
            _ => (0.0, 1.0),
        };
        let span = x1 - x0;
        let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
        let in_range = |&(x, y): &(f64, f64)| x.is_finite() && y.is_finite() && x >= x0 && x <= x1;
        let max = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().flatten())
            .filter(|p| in_range(p))
            .map(|p| p.1)
            .fold(0.0, f64::max);
        let (top, step) = scale(max, self.unit.least_top());
        let px = |x: f64| LEFT + (x - x0) / span * pw;
        let py = |y: f64| TOP + ph - (y.max(0.0) / top).min(1.0) * ph;

        let mut out = figure_open(self.id, self.title, &self.series);
        out.push_str("</figcaption>");
        let _ = write!(
            out,
            r#"<svg width="{W}" height="{H}" viewBox="0 0 {W} {H}" role="img" aria-label="{}">"#,
            escape(self.title)
        );
        for i in 0..=ticks(top, step) {
            let v = step * f64::from(i);
            let y = py(v);
            if i > 0 {
                let _ = write!(
                    out,
                    r#"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="{GRID}"/>"#,
                    W - RIGHT
                );
            }
            let _ = write!(
                out,
                r#"<text class="tick" x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
                LEFT - 6.0,
                y + 4.0,
                self.unit.tick(v)
            );
        }
        for s in &self.series {
            let mut d = String::new();
            let mut pen_down = false;
            for p in &s.points {
                match p.filter(|p| in_range(p)) {
                    Some((x, y)) => {
                        let cmd = if pen_down { 'L' } else { 'M' };
                        let _ = write!(d, "{cmd}{:.1} {:.1}", px(x), py(y));
                        pen_down = true;
                    }
                    None => pen_down = false,
                }
            }
            if d.is_empty() {
                continue;
            }
            let dash = if s.dashed {
                r#" stroke-dasharray="5 3""#
            } else {
                ""
            };
            let _ = write!(
                out,
                r#"<path class="series {}" d="{d}" fill="none" stroke="{}" stroke-width="2" stroke-linejoin="round" stroke-linecap="round"{dash}><title>{}</title></path>"#,
                s.class, s.colour, s.name
            );
        }
        // Over the series: see the module comment. Two pixels wider on each side than the
        // plot, to cover a round line cap at either end.
        let base = TOP + ph;
        let _ = write!(
            out,
            r#"<line class="axis" x1="{}" x2="{}" y1="{base}" y2="{base}" stroke="{AXIS}" stroke-width="2"/>"#,
            LEFT - 2.0,
            W - RIGHT + 2.0
        );
        for &(x, label) in self.x_ticks.iter().filter(|t| t.0.is_finite()) {
            let x = px(x.clamp(x0, x1));
            let anchor = match x {
                x if x <= LEFT + 1.0 => "start",
                x if x >= W - RIGHT - 1.0 => "end",
                _ => "middle",
            };
            let _ = write!(
                out,
                r#"<text class="tick" x="{x:.1}" y="{}" text-anchor="{anchor}">{}</text>"#,
                H - 6.0,
                escape(label)
            );
        }
        out.push_str("</svg></figure>");
        out
    }
}

/// A bar chart of counts (a latency histogram), with its caption.
pub(super) struct BarChart<'a> {
    pub title: &'a str,
    /// A second caption line.
    pub note: &'a str,
    pub bars: &'a [u64],
    /// Labels at bar boundaries: `(i, label)` sits at the left edge of bar `i`.
    pub x_ticks: &'a [(usize, &'a str)],
}

// Geometry of a bar chart, in pixels: small multiples, four to a row on a wide screen.
const BW: f64 = 300.0;
const BH: f64 = 120.0;
const BLEFT: f64 = 36.0;
const BRIGHT: f64 = 10.0;
const BTOP: f64 = 6.0;
const BBOTTOM: f64 = 20.0;

impl BarChart<'_> {
    pub fn render(&self) -> String {
        let (pw, ph) = (BW - BLEFT - BRIGHT, BH - BTOP - BBOTTOM);
        let max = self.bars.iter().copied().max().unwrap_or(0) as f64;
        let (top, _) = scale(max, 1.0);
        let n = self.bars.len().max(1) as f64;
        let bar = pw / n;
        let px = |i: usize| BLEFT + i as f64 * bar;
        let py = |v: f64| BTOP + ph - (v / top).min(1.0) * ph;

        let mut out = figure_open("", self.title, &[]);
        let _ = write!(out, "<small>{}</small></figcaption>", escape(self.note));
        let _ = write!(
            out,
            r#"<svg class="histogram" width="{BW}" height="{BH}" viewBox="0 0 {BW} {BH}" role="img" aria-label="{}">"#,
            escape(self.title)
        );
        // Only the top tick: small multiples read by shape, the caption gives the counts.
        let _ = write!(
            out,
            r#"<line x1="{BLEFT}" x2="{}" y1="{BTOP}" y2="{BTOP}" stroke="{GRID}"/><text class="tick" x="{}" y="{}" text-anchor="end">{}</text>"#,
            BW - BRIGHT,
            BLEFT - 4.0,
            BTOP + 8.0,
            number(top)
        );
        for (i, &count) in self.bars.iter().enumerate() {
            if count == 0 {
                continue;
            }
            let y = py(count as f64);
            let _ = write!(
                out,
                r#"<rect class="bar" x="{:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{count}</title></rect>"#,
                px(i) + 0.5,
                (bar - 1.0).max(1.0),
                BTOP + ph - y,
                colour::BAR
            );
        }
        let base = BTOP + ph;
        let _ = write!(
            out,
            r#"<line class="axis" x1="{BLEFT}" x2="{}" y1="{base}" y2="{base}" stroke="{AXIS}"/>"#,
            BW - BRIGHT
        );
        for &(i, label) in self.x_ticks {
            let x = px(i);
            let _ = write!(
                out,
                r#"<line x1="{x:.1}" x2="{x:.1}" y1="{base}" y2="{}" stroke="{AXIS}"/><text class="tick" x="{x:.1}" y="{}" text-anchor="middle">{}</text>"#,
                base + 3.0,
                BH - 5.0,
                escape(label)
            );
        }
        out.push_str("</svg></figure>");
        out
    }
}

/// `<figure>` and its caption, left open: the title, then a legend entry per series.
fn figure_open(id: &str, title: &str, series: &[Series]) -> String {
    let mut out = String::with_capacity(8192);
    if id.is_empty() {
        out.push_str(r#"<figure class="view"><figcaption>"#);
    } else {
        let _ = write!(out, r#"<figure id="{}"><figcaption>"#, escape(id));
    }
    let _ = write!(out, "<b>{}</b>", escape(title));
    for s in series {
        let _ = write!(
            out,
            r#" <span class="key"><i style="background:{};opacity:.6"></i>{}</span>"#,
            s.colour,
            escape(s.name)
        );
    }
    out
}

/// The top of a y axis showing `max` (at least `least`), and its tick step: 1, 2, 2.5 or 5 times
/// a power of ten, about four ticks.
fn scale(max: f64, least: f64) -> (f64, f64) {
    let max = if max.is_finite() && max > least {
        max
    } else {
        least
    };
    let raw = max / 4.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = match raw / magnitude {
        r if r <= 1.0 => 1.0,
        r if r <= 2.0 => 2.0,
        r if r <= 2.5 => 2.5,
        r if r <= 5.0 => 5.0,
        _ => 10.0,
    } * magnitude;
    let top = (max / step).ceil() * step;
    (top, step)
}

/// How many steps up to `top` (rounded: `top` is a multiple of `step` up to float error).
fn ticks(top: f64, step: f64) -> u32 {
    (top / step).round().clamp(1.0, 20.0) as u32
}

pub(super) use crate::html::escape;

/// A number with at most two decimals, trailing zeros dropped: `0.25`, `12.5`, `300`.
pub(super) fn number(v: f64) -> String {
    if !v.is_finite() {
        return "–".into();
    }
    let decimals = match v.abs() {
        a if a >= 100.0 => 0,
        a if a >= 10.0 => 1,
        _ => 2,
    };
    let s = format!("{v:.decimals$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        &s
    };
    if s == "-0" {
        "0".into()
    } else {
        s.into()
    }
}

/// A duration in seconds, in the unit that reads best: `350 µs`, `12.5 ms`, `1.25 s`.
pub(super) fn duration(secs: f64) -> String {
    match secs {
        s if !s.is_finite() => "–".into(),
        s if s <= 0.0 => "0".into(),
        s if s < 0.001 => format!("{} µs", number((s * 1e6).round())),
        s if s < 1.0 => format!("{} ms", number(s * 1e3)),
        s => format!("{} s", number(s)),
    }
}

#[cfg(test)]
mod tests {
    use super::{duration, escape, number, scale, LineChart, Series, Unit};

    #[test]
    fn numbers_and_durations_read_well() {
        for (v, text) in [
            (0.0, "0"),
            (0.25, "0.25"),
            (1.0 / 3.0, "0.33"),
            (12.345, "12.3"),
            (300.2, "300"),
            (0.1 + 0.2, "0.3"),
            (f64::NAN, "–"),
        ] {
            assert_eq!(number(v), text);
        }
        for (v, text) in [
            (0.0, "0"),
            (0.000_35, "350 µs"),
            (0.0125, "12.5 ms"),
            (0.0025, "2.5 ms"),
            (1.25, "1.25 s"),
            (f64::INFINITY, "–"),
        ] {
            assert_eq!(duration(v), text);
        }
    }

    #[test]
    fn scales_are_round_and_never_empty() {
        for (max, least, top, step) in [
            (0.0, 1.0, 1.0, 0.25),
            (f64::NAN, 1.0, 1.0, 0.25),
            (7.0, 1.0, 8.0, 2.0),
            (130.0, 1.0, 150.0, 50.0),
            (0.004, 0.01, 0.01, 0.0025),
        ] {
            let (t, s) = scale(max, least);
            assert!(
                (t - top).abs() < 1e-9 && (s - step).abs() < 1e-9,
                "{max}: {t} {s}"
            );
        }
    }

    #[test]
    fn escaping() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn gaps_and_out_of_range_points_split_the_line() {
        let chart = LineChart {
            id: "c",
            title: "t",
            unit: Unit::Rate,
            x: (0.0, 10.0),
            x_ticks: &[(0.0, "then"), (10.0, "now")],
            series: vec![Series {
                name: "rate",
                class: "rate",
                colour: super::colour::RATE,
                dashed: false,
                points: vec![
                    Some((-1.0, 5.0)),
                    Some((0.0, 1.0)),
                    Some((1.0, f64::NAN)),
                    Some((2.0, 2.0)),
                    None,
                    Some((3.0, 4.0)),
                    Some((4.0, 4.0)),
                ],
            }],
        }
        .render();
        let d = chart
            .split(" d=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        assert_eq!(d.matches('M').count(), 3, "{d}");
        assert_eq!(d.matches('L').count(), 1, "{d}");
        assert!(!chart.contains("NaN") && !chart.contains("inf"));
    }
}
