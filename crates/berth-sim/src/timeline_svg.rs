//! A picture of a replacement: one row per host, its berth states as bars on one time axis, the kill and the
//! replacement's launch marked. The demo draws it from the hosts' `/state` timelines (each relative to its own
//! berth's start, placed on the demo's clock by when the document was read and its `uptime_ms`).
//!
//! Plain SVG 1.1 written by hand: a few dozen rectangles, lines and texts need no drawing library, and the file
//! renders the same in a browser, on GitHub and in an image viewer.

use std::fmt::Write as _;

use crate::state::StateView;

/// One state's bar on a row: from, to (milliseconds on the common axis).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bar {
    /// The state's name (`claim`, `attach_eni`, ..., `healthy`).
    pub state: String,
    /// Entered.
    pub from_ms: u64,
    /// Left (or when it was last seen).
    pub to_ms: u64,
}

/// One host's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// What the row is called (`host 0 (broker 0, killed)`).
    pub label: String,
    /// Its states in order.
    pub bars: Vec<Bar>,
}

impl Row {
    /// A host's row from its `/state` document, read `read_at_ms` into the chart's axis: the document's timeline
    /// counts from its berth's start, which was `uptime_ms` before the read.
    pub fn of(label: impl Into<String>, view: &StateView, read_at_ms: u64) -> Self {
        let started = read_at_ms.saturating_sub(view.uptime_ms);
        let bars = view
            .timeline
            .iter()
            .map(|entry| Bar {
                state: entry.state.clone(),
                from_ms: started + entry.entered_ms,
                to_ms: started + entry.entered_ms + entry.duration_ms,
            })
            .collect();
        Self {
            label: label.into(),
            bars,
        }
    }

    /// When the row's first state began (its berth's start).
    pub fn start_ms(&self) -> Option<u64> {
        self.bars.first().map(|bar| bar.from_ms)
    }

    /// The last state lasts until `at_ms` (a killed host's berth was last read before the kill).
    pub fn last_until(mut self, at_ms: u64) -> Self {
        if let Some(last) = self.bars.last_mut() {
            last.to_ms = last.to_ms.max(at_ms);
        }
        self
    }
}

/// A moment marked on a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    /// When, on the common axis.
    pub at_ms: u64,
    /// The row it belongs to.
    pub row: usize,
    /// What happened (`killed`, `replacement launched`).
    pub label: String,
    /// A kill (drawn red, across the whole chart) or another event.
    pub kill: bool,
}

/// Each state's colour, in the order of the legend.
const STATE_COLOURS: [(&str, &str); 9] = [
    ("claim", "#8da0cb"),
    ("attach_eni", "#66c2a5"),
    ("route", "#a6d854"),
    ("attach_ebs", "#e5c494"),
    ("mount", "#ffd92f"),
    ("start_kafka", "#fc8d62"),
    ("healthy", "#1b9e77"),
    ("draining", "#b3b3b3"),
    ("failed", "#d62728"),
];

const WIDTH: f64 = 960.0;
const LABEL_WIDTH: f64 = 230.0;
const RIGHT_MARGIN: f64 = 30.0;
const TOP: f64 = 44.0;
const ROW_HEIGHT: f64 = 30.0;
const BAR_HEIGHT: f64 = 18.0;

/// The SVG document: `title` above, the rows, the time axis below them, the legend at the bottom.
pub fn render(title: &str, rows: &[Row], marks: &[Mark]) -> String {
    let end_ms = rows
        .iter()
        .flat_map(|row| row.bars.iter().map(|bar| bar.to_ms))
        .chain(marks.iter().map(|mark| mark.at_ms))
        .max()
        .unwrap_or(0)
        .max(1);
    let plot = WIDTH - LABEL_WIDTH - RIGHT_MARGIN;
    let x = |ms: u64| LABEL_WIDTH + plot * ms as f64 / end_ms as f64;
    let axis_y = TOP + ROW_HEIGHT * rows.len() as f64 + 8.0;
    let height = axis_y + 70.0;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" \
         viewBox=\"0 0 {WIDTH} {height}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\n\
         <text x=\"10\" y=\"22\" font-size=\"15\" font-weight=\"bold\">{}</text>\n",
        escape(title)
    );
    for (index, row) in rows.iter().enumerate() {
        let y = TOP + ROW_HEIGHT * index as f64;
        let _ = writeln!(
            svg,
            "<text x=\"10\" y=\"{:.1}\">{}</text>",
            y + BAR_HEIGHT - 4.0,
            escape(&row.label)
        );
        for bar in &row.bars {
            let (left, right) = (x(bar.from_ms), x(bar.to_ms.max(bar.from_ms)));
            let _ = writeln!(
                svg,
                "<rect x=\"{left:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{BAR_HEIGHT}\" fill=\"{}\">\
                 <title>{}: {:.1} s</title></rect>",
                (right - left).max(1.0),
                colour(&bar.state),
                escape(&bar.state),
                (bar.to_ms.saturating_sub(bar.from_ms)) as f64 / 1000.0
            );
        }
    }
    draw_marks(&mut svg, marks, &x, axis_y);
    draw_axis(&mut svg, end_ms, &x, axis_y);
    draw_legend(&mut svg, axis_y + 42.0);
    svg.push_str("</svg>\n");
    svg
}

/// The marks: a kill is a red line across the rows; every mark is labelled on its row.
fn draw_marks(svg: &mut String, marks: &[Mark], x: &impl Fn(u64) -> f64, axis_y: f64) {
    for mark in marks {
        let at = x(mark.at_ms);
        let y = TOP + ROW_HEIGHT * mark.row as f64;
        let colour = if mark.kill { "#d62728" } else { "#333333" };
        if mark.kill {
            let _ = writeln!(
                svg,
                "<line x1=\"{at:.1}\" y1=\"{:.1}\" x2=\"{at:.1}\" y2=\"{axis_y:.1}\" stroke=\"{colour}\" \
                 stroke-width=\"2\" stroke-dasharray=\"4 3\"/>",
                TOP - 6.0
            );
        } else {
            let _ = writeln!(
                svg,
                "<path d=\"M {at:.1} {:.1} l -5 -7 h 10 z\" fill=\"{colour}\"/>",
                y - 1.0
            );
        }
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" fill=\"{colour}\" font-weight=\"bold\">{}</text>",
            at + 4.0,
            y + ROW_HEIGHT - 1.0,
            escape(&mark.label)
        );
    }
}

/// The time axis: a line with a tick and a label every step of a round number of seconds.
fn draw_axis(svg: &mut String, end_ms: u64, x: &impl Fn(u64) -> f64, axis_y: f64) {
    let step_s = [1u64, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800]
        .into_iter()
        .find(|step| end_ms / (step * 1000) <= 10)
        .unwrap_or(3600);
    let _ = writeln!(
        svg,
        "<line x1=\"{LABEL_WIDTH}\" y1=\"{axis_y:.1}\" x2=\"{:.1}\" y2=\"{axis_y:.1}\" stroke=\"#333333\"/>",
        x(end_ms)
    );
    let mut tick = 0;
    while tick * 1000 <= end_ms {
        let at = x(tick * 1000);
        let _ = writeln!(
            svg,
            "<line x1=\"{at:.1}\" y1=\"{axis_y:.1}\" x2=\"{at:.1}\" y2=\"{:.1}\" stroke=\"#333333\"/>\
             <text x=\"{at:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{tick} s</text>",
            axis_y + 5.0,
            axis_y + 18.0
        );
        tick += step_s;
    }
}

/// The states' colours.
fn draw_legend(svg: &mut String, y: f64) {
    let mut left = 10.0;
    for (state, colour) in STATE_COLOURS {
        let _ = writeln!(
            svg,
            "<rect x=\"{left:.1}\" y=\"{:.1}\" width=\"12\" height=\"12\" fill=\"{colour}\"/>\
             <text x=\"{:.1}\" y=\"{y:.1}\">{state}</text>",
            y - 10.0,
            left + 16.0
        );
        left += 22.0 + 7.0 * state.len() as f64;
    }
}

fn colour(state: &str) -> &'static str {
    STATE_COLOURS
        .iter()
        .find(|(name, _)| *name == state)
        .map_or("#999999", |(_, colour)| colour)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(state: &str, from_ms: u64, to_ms: u64) -> Bar {
        Bar {
            state: state.into(),
            from_ms,
            to_ms,
        }
    }

    fn chart() -> String {
        let rows = [
            Row {
                label: "host 0 (broker 0, killed)".into(),
                bars: vec![bar("claim", 0, 1_000), bar("healthy", 1_000, 20_000)],
            },
            Row {
                label: "host 3 <replacement> & co".into(),
                bars: vec![
                    bar("start_kafka", 25_000, 30_000),
                    bar("healthy", 30_000, 40_000),
                ],
            },
        ];
        let marks = [
            Mark {
                at_ms: 20_000,
                row: 0,
                label: "killed".into(),
                kill: true,
            },
            Mark {
                at_ms: 25_000,
                row: 1,
                label: "replacement launched".into(),
                kill: false,
            },
        ];
        render("broker 0 replaced", &rows, &marks)
    }

    #[test]
    fn the_chart_is_well_formed_svg_with_a_bar_per_state_and_the_marks() {
        let svg = chart();
        let document = roxmltree::Document::parse(&svg).expect("well-formed XML");
        let root = document.root_element();
        assert_eq!(root.tag_name().name(), "svg");
        assert_eq!(
            root.tag_name().namespace(),
            Some("http://www.w3.org/2000/svg")
        );
        let titled: Vec<String> = root
            .descendants()
            .filter(|node| node.has_tag_name("title"))
            .filter_map(|node| node.text().map(str::to_owned))
            .collect();
        assert_eq!(
            titled,
            [
                "claim: 1.0 s",
                "healthy: 19.0 s",
                "start_kafka: 5.0 s",
                "healthy: 10.0 s"
            ]
        );
        let texts: Vec<&str> = root
            .descendants()
            .filter(|node| node.has_tag_name("text"))
            .filter_map(|node| node.text())
            .collect();
        for expected in [
            "broker 0 replaced",
            "host 3 <replacement> & co",
            "killed",
            "replacement launched",
            "0 s",
            "40 s",
            "failed",
        ] {
            assert!(texts.contains(&expected), "{expected} in {texts:?}");
        }
    }

    #[test]
    fn a_row_places_a_documents_timeline_by_when_it_was_read() {
        let mut view = StateView::empty();
        view.uptime_ms = 9_000;
        view.timeline = [("claim", 0, 1_000), ("healthy", 1_000, 8_000)]
            .into_iter()
            .map(
                |(state, entered_ms, duration_ms)| crate::state::TimelineEntry {
                    state: state.into(),
                    entered_ms,
                    duration_ms,
                    attempts: 1,
                },
            )
            .collect();
        let row = Row::of("host 3", &view, 30_000);
        assert_eq!(
            row.bars,
            [bar("claim", 21_000, 22_000), bar("healthy", 22_000, 30_000)]
        );
        assert_eq!(row.start_ms(), Some(21_000));
        let killed = row.last_until(45_000);
        assert_eq!(killed.bars[1], bar("healthy", 22_000, 45_000));
    }

    #[test]
    fn bars_and_marks_stand_where_their_times_put_them_on_one_axis() {
        let svg = chart();
        let document = roxmltree::Document::parse(&svg).unwrap();
        let plot = WIDTH - LABEL_WIDTH - RIGHT_MARGIN;
        let at = |ms: f64| LABEL_WIDTH + plot * ms / 40_000.0;
        let bars: Vec<(f64, f64)> = document
            .descendants()
            .filter(|node| node.has_tag_name("rect") && node.first_child().is_some())
            .map(|node| {
                let number = |name: &str| node.attribute(name).unwrap().parse::<f64>().unwrap();
                (number("x"), number("width"))
            })
            .collect();
        let close = |a: f64, b: f64| (a - b).abs() < 0.1;
        assert!(close(bars[1].0, at(1_000.0)) && close(bars[1].1, at(20_000.0) - at(1_000.0)));
        assert!(
            close(bars[2].0, at(25_000.0)),
            "the replacement starts after the kill"
        );
        let kill = document
            .descendants()
            .find(|node| node.has_tag_name("line") && node.attribute("stroke") == Some("#d62728"))
            .expect("the kill's line");
        assert!(close(
            kill.attribute("x1").unwrap().parse().unwrap(),
            at(20_000.0)
        ));
    }
}
