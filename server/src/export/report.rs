//! `report.html`: one file a researcher opens offline, with the export's counts and its charts.
//!
//! Each chart is drawn by `plotters` with its SVG backend into a string and put inline in the
//! page (no script, no stylesheet or font from elsewhere). The charts:
//! - P2P RTT distribution: a histogram of each decided probe's `rtt_ms`;
//! - probe duration vs RTT: one point per decided probe, accepted and rejected apart;
//! - wait time to game: a histogram of the participants' `wait_to_game_ms`, in seconds;
//! - endings per scene: how many participants' parts ended each way (`ending`), per scene;
//! - connection types: how the game connections were made (`connections.csv`).
//!
//! A chart without data is replaced by a sentence saying so.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;

use super::tables::Tables;
use super::ExportSummary;

/// The rendered report.
#[derive(Debug, Clone)]
pub struct Report {
    /// The whole HTML document.
    pub text: String,
    /// How many charts it holds (inline `<svg>` elements).
    pub charts: usize,
}

const WIDTH: u32 = 760;
const HEIGHT: u32 = 380;
const FONT: &str = "sans-serif";
const BAR: RGBColor = RGBColor(0x3b, 0x6e, 0xa8);
const ACCEPTED: RGBColor = RGBColor(0x2e, 0x8b, 0x57);
const REJECTED: RGBColor = RGBColor(0xc0, 0x39, 0x2b);

/// Renders the report of `tables` (after [`Tables::finish`]) and what `summary` counted.
pub fn render(tables: &Tables, summary: &ExportSummary) -> Report {
    let mut charts = 0;
    let mut body = String::new();
    body.push_str(&summary_section(tables, summary));

    let rtts: Vec<f64> = tables.probes().iter().filter_map(|p| p.rtt_ms).collect();
    let waits_s: Vec<f64> = tables
        .participants()
        .iter()
        .filter_map(|p| p.wait_to_game_ms)
        .map(|ms| ms / 1000.0)
        .collect();
    let points: Vec<(f64, f64, bool)> = tables
        .probes()
        .iter()
        .filter_map(|p| Some((p.rtt_ms?, p.duration_ms?, p.accepted?)))
        .collect();
    let mut endings: BTreeMap<String, u64> = BTreeMap::new();
    for p in tables.participants() {
        *endings
            .entry(format!("{}: {}", p.scene_id, p.ending))
            .or_default() += 1;
    }
    let mut kinds: BTreeMap<String, u64> = BTreeMap::new();
    for c in &tables.connections {
        *kinds.entry(c.connection_type.clone()).or_default() += 1;
    }

    let figures = [
        (
            "p2p-rtt",
            "P2P RTT distribution",
            "The RTT each decided probe was judged on (the larger of the two members' \
             DataChannel medians), ms; probes.csv, rtt_ms.",
            histogram("P2P RTT (ms)", "RTT, ms", &rtts),
        ),
        (
            "probe-duration",
            "Probe duration vs RTT",
            "Each decided probe: its RTT (ms) against the time from probe_prepare to the \
             decision (ms); accepted in green, rejected in red. probes.csv, rtt_ms and \
             duration_ms.",
            scatter(&points),
        ),
        (
            "wait-to-game",
            "Wait time to game",
            "From a participant's first participant_joined to the game_created that placed \
             them, seconds; participants.csv, wait_to_game_ms.",
            histogram("Wait to game (s)", "wait, s", &waits_s),
        ),
        (
            "endings",
            "Endings per scene",
            "How each participant's part ended (participants.csv, ending), counted per scene.",
            bars("Endings per scene", &endings),
        ),
        (
            "connection-types",
            "Connection types",
            "How the game connections were made, one per member and peer \
             (connections.csv, connection_type).",
            bars("Connection types", &kinds),
        ),
    ];
    for (id, title, caption, svg) in figures {
        let _ = write!(body, "<section id=\"{id}\"><h2>{}</h2>", escape(title));
        match svg {
            Some(svg) => {
                charts += 1;
                let _ = write!(
                    body,
                    "<figure>{svg}<figcaption>{}</figcaption></figure>",
                    escape(caption)
                );
            }
            None => {
                let _ = write!(
                    body,
                    "<p class=\"empty\">No data for this chart in the record. {}</p>",
                    escape(caption)
                );
            }
        }
        body.push_str("</section>\n");
    }

    let text = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>pairlab export: {scenes}</title><style>{STYLE}</style></head>\
         <body><h1>pairlab export</h1>\n{body}</body></html>\n",
        scenes = escape(&summary.scenes.join(", ")),
    );
    Report { text, charts }
}

const STYLE: &str = "body{font-family:sans-serif;max-width:820px;margin:1em auto;padding:0 1em;\
color:#222}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px;\
text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}\
figure{margin:0}figcaption{color:#555;font-size:90%}svg{max-width:100%;height:auto}\
.empty{color:#777}";

/// The counts table: per scene, participants, probes, games; then the files and what was
/// skipped.
fn summary_section(tables: &Tables, summary: &ExportSummary) -> String {
    let mut s = String::from(
        "<section id=\"summary\"><h2>Summary</h2><table><tr><th>scene</th><th>participants</th>\
         <th>probes</th><th>accepted</th><th>rejected</th><th>games</th></tr>",
    );
    for scene in &summary.scenes {
        let participants = tables
            .participants()
            .iter()
            .filter(|p| &p.scene_id == scene)
            .count();
        let probes: Vec<_> = tables
            .probes()
            .iter()
            .filter(|p| &p.scene_id == scene)
            .collect();
        let accepted = probes.iter().filter(|p| p.accepted == Some(true)).count();
        let rejected = probes.iter().filter(|p| p.accepted == Some(false)).count();
        let games = tables
            .games()
            .iter()
            .filter(|g| &g.scene_id == scene)
            .count();
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{participants}</td><td>{}</td><td>{accepted}</td>\
             <td>{rejected}</td><td>{games}</td></tr>",
            escape(scene),
            probes.len()
        );
    }
    let _ = write!(
        s,
        "</table><p>{} record line(s) read; {} unreadable.",
        summary.lines, summary.unreadable_lines
    );
    if !summary.unknown_events.is_empty() {
        s.push_str(" Skipped (kinds this export does not know): ");
        let skipped: Vec<String> = summary
            .unknown_events
            .iter()
            .map(|(name, n)| format!("{} × {n}", escape(name)))
            .collect();
        s.push_str(&skipped.join(", "));
        s.push('.');
    }
    s.push_str("</p><p>Tables: ");
    let files: Vec<String> = summary
        .files
        .iter()
        .filter_map(|(path, rows)| {
            let name = path.file_name()?.to_string_lossy().into_owned();
            Some(format!("{} ({rows} rows)", escape(&name)))
        })
        .collect();
    s.push_str(&files.join(", "));
    s.push_str(". Their columns: docs/EXPORT.md.</p></section>\n");
    s
}

/// Escapes text for HTML element content and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Draws into an SVG string; `None` (logged) if plotters fails.
fn draw(
    what: &str,
    paint: impl FnOnce(
        DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    ) -> Result<(), Box<dyn std::error::Error + '_>>,
) -> Option<String> {
    let mut svg = String::new();
    let result = paint(SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area())
        .map_err(|e| e.to_string());
    match result {
        Ok(()) => Some(svg),
        Err(e) => {
            tracing::error!("report: cannot draw {what}: {e}");
            None
        }
    }
}

/// A bin width of 1, 2 or 5 × a power of ten that puts `max` into at most about 20 bins.
fn bin_width(max: f64) -> f64 {
    let raw = (max / 20.0).max(f64::MIN_POSITIVE);
    let power = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|w| *w >= raw)
        .unwrap_or(10.0 * power)
}

/// A histogram of non-negative `values` (negative and non-finite ones are left out); `None`
/// when there are none.
fn histogram(title: &str, x_desc: &str, values: &[f64]) -> Option<String> {
    let values: Vec<f64> = values
        .iter()
        .copied()
        .filter(|v| v.is_finite() && *v >= 0.0)
        .collect();
    let max = values.iter().copied().reduce(f64::max)?;
    let width = bin_width(max);
    // At most ~21 bins by construction of the width.
    let bins = (max / width).floor() as usize + 1;
    let mut counts = vec![0u64; bins];
    for v in &values {
        let bin = ((v / width).floor() as usize).min(bins - 1);
        counts[bin] += 1;
    }
    let top = counts.iter().copied().max().unwrap_or(1);
    // As many decimals as the bin width has (0.5 → 1, 0.02 → 2), so no float noise shows.
    let decimals = if width >= 1.0 {
        0
    } else {
        (-width.log10().floor()) as usize
    };
    let label = move |i: u32| {
        let from = f64::from(i) * width;
        format!("{from:.decimals$}–{:.decimals$}", from + width)
    };
    draw(title, |root| {
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT, 20))
            .margin(12)
            .x_label_area_size(50)
            .y_label_area_size(50)
            .build_cartesian_2d((0u32..bins as u32).into_segmented(), 0u64..top + 1)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_desc(x_desc)
            .y_desc("count")
            .x_labels(bins.min(12))
            .x_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => label(*i),
                SegmentValue::Last => String::new(),
            })
            .draw()?;
        chart.draw_series(
            Histogram::vertical(&chart)
                .style(BAR.filled())
                .margin(2)
                .data(counts.iter().enumerate().map(|(i, c)| (i as u32, *c))),
        )?;
        root.present()?;
        Ok(())
    })
}

/// Horizontal bars, one per category with its count; `None` when there are none.
fn bars(title: &str, counts: &BTreeMap<String, u64>) -> Option<String> {
    if counts.is_empty() {
        return None;
    }
    let labels: Vec<&String> = counts.keys().collect();
    let n = labels.len() as u32;
    let top = counts.values().copied().max().unwrap_or(1);
    let longest = labels.iter().map(|l| l.chars().count()).max().unwrap_or(1) as u32;
    draw(title, |root| {
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT, 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size((longest * 8 + 16).min(WIDTH / 2))
            .build_cartesian_2d(0u64..top + 1, (0u32..n).into_segmented())?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .x_desc("count")
            .y_labels(n as usize)
            .y_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => labels
                    .get(*i as usize)
                    .map(|l| l.to_string())
                    .unwrap_or_default(),
                SegmentValue::Last => String::new(),
            })
            .draw()?;
        chart.draw_series(
            Histogram::horizontal(&chart)
                .style(BAR.filled())
                .margin(4)
                .data(counts.values().enumerate().map(|(i, c)| (i as u32, *c))),
        )?;
        root.present()?;
        Ok(())
    })
}

/// Probe duration (y, ms) against RTT (x, ms), accepted and rejected apart; `None` when there
/// are no points.
fn scatter(points: &[(f64, f64, bool)]) -> Option<String> {
    let points: Vec<(f64, f64, bool)> = points
        .iter()
        .copied()
        .filter(|(x, y, _)| x.is_finite() && y.is_finite())
        .collect();
    let x_max = points.iter().map(|p| p.0).reduce(f64::max)?;
    let y_max = points.iter().map(|p| p.1).reduce(f64::max)?;
    draw("probe duration vs RTT", |root| {
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("Probe duration vs RTT", (FONT, 20))
            .margin(12)
            .x_label_area_size(50)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..(x_max * 1.1).max(1.0), 0f64..(y_max * 1.1).max(1.0))?;
        chart
            .configure_mesh()
            .x_desc("P2P RTT, ms")
            .y_desc("probe duration, ms")
            .draw()?;
        for (accepted, color, name) in [(true, ACCEPTED, "accepted"), (false, REJECTED, "rejected")]
        {
            chart
                .draw_series(
                    points
                        .iter()
                        .filter(|p| p.2 == accepted)
                        .map(|p| Circle::new((p.0, p.1), 4, color.filled())),
                )?
                .label(name)
                .legend(move |(x, y)| Circle::new((x + 8, y), 4, color.filled()));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bin_widths_are_round() {
        assert_eq!(bin_width(100.0), 5.0);
        assert_eq!(bin_width(150.0), 10.0);
        assert_eq!(bin_width(7.0), 0.5);
        assert_eq!(bin_width(2000.0), 100.0);
        assert!(bin_width(0.0) > 0.0);
    }

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn charts_without_data_are_none() {
        assert!(histogram("t", "x", &[]).is_none());
        assert!(histogram("t", "x", &[f64::NAN, -1.0]).is_none());
        assert!(bars("t", &BTreeMap::new()).is_none());
        assert!(scatter(&[]).is_none());
        let svg = histogram("t", "x", &[0.0, 12.5, 99.0]).expect("a chart");
        assert!(
            svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"),
            "{svg}"
        );
    }
}
