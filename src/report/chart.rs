//! Line charts for papers (ROC and precision–recall curves) as SVG 1.1 and as PNG, laid out
//! once and drawn by two back ends, so both files show the same figure.
//!
//! # Units and coordinates
//! * Layout is in *user units* = pixels of the PNG at scale 1: the canvas is
//!   [`WIDTH_PX`] × [`HEIGHT_PX`], origin top-left, y down; the SVG's `viewBox` and
//!   `width`/`height` are the same numbers. [`Chart::to_png`] at scale `s` multiplies every
//!   coordinate, line width and font size by `s` (an image `s` times as wide and tall).
//! * Data x and y are fixed to [0, 1]. The plot square has its corners at user coordinates
//!   ([`PLOT_X0`], [`PLOT_Y0`]) (data (0, 1)) and `PLOT_X0 + PLOT_SIZE`, `PLOT_Y0 + PLOT_SIZE`
//!   (data (1, 0)); see [`plot_px`]. A pixel (i, j) covers [i, i+1) × [j, j+1), so the frame,
//!   grid and ticks sit on half-integers and are one whole pixel wide at every scale.
//!
//! # What is drawn
//! Title, light grid at 0.2 steps, frame, outward ticks labelled 0.0 … 1.0, axis titles, an
//! optional dashed diagonal (chance) and horizontal reference line (e.g. PR prevalence), one
//! polyline per series (colour `i` of the Okabe–Ito palette [`PALETTE`], dash pattern from its
//! [`LineStyle`]), and a legend inside the plot, put in the corner that covers the fewest
//! plotted points.
//!
//! # Guarantees
//! No input panics. Non-finite points are dropped and break the polyline there (as matplotlib
//! does); segments are clipped to [0, 1]² (a series leaving the square continues where it comes
//! back); a series of fewer than two usable points draws nothing but keeps its legend entry.
//! Text characters outside the embedded font (ASCII, "–", "±") are drawn as "?" in the PNG;
//! control characters are "?" in both outputs. PNG: 8-bit RGB, zlib via `flate2`, filter 0.
//! Text glyphs: DejaVu Sans 13 px at scale 1, a 26 px rendering at scale 2, and that one
//! scaled bilinearly above 2; positions always come from the 13 px advances × scale.

use std::fmt::Write as _;

use super::font::{self, Face};

/// Canvas width at scale 1, pixels.
pub const WIDTH_PX: u32 = 560;
/// Canvas height at scale 1, pixels.
pub const HEIGHT_PX: u32 = 570;
/// Largest PNG scale; larger requests are drawn at this scale (smaller than 1: at 1).
pub const MAX_SCALE: u32 = 8;
/// Left edge of the plot square (data x = 0), user units.
pub const PLOT_X0: f64 = 72.5;
/// Top edge of the plot square (data y = 1), user units.
pub const PLOT_Y0: f64 = 44.5;
/// Side of the plot square (data 0 → 1), user units.
pub const PLOT_SIZE: f64 = 470.0;

/// Okabe & Ito (2008) colour-blind-safe palette, reordered so that the first colours are the
/// most distinct on white (yellow last): blue, vermillion, bluish green, reddish purple,
/// orange, sky blue, black, yellow.
pub const PALETTE: [[u8; 3]; 8] = [
    [0x00, 0x72, 0xB2],
    [0xD5, 0x5E, 0x00],
    [0x00, 0x9E, 0x73],
    [0xCC, 0x79, 0xA7],
    [0xE6, 0x9F, 0x00],
    [0x56, 0xB4, 0xE9],
    [0x00, 0x00, 0x00],
    [0xF0, 0xE4, 0x42],
];

/// Colour of series `index` (the palette repeats after 8).
pub fn series_colour(index: usize) -> [u8; 3] {
    PALETTE[index % PALETTE.len()]
}

/// Maps data (x, y) ∈ [0, 1]² to user units (pixels at scale 1): x right, y up on the page.
pub fn plot_px(x: f64, y: f64) -> (f64, f64) {
    (PLOT_X0 + x * PLOT_SIZE, PLOT_Y0 + (1.0 - y) * PLOT_SIZE)
}

type Rgb = [u8; 3];

const WHITE: Rgb = [0xFF, 0xFF, 0xFF];
const INK: Rgb = [0x1A, 0x1A, 0x1A];
const GRID: Rgb = [0xE3, 0xE3, 0xE3];
const REFERENCE: Rgb = [0x8C, 0x8C, 0x8C];
const LEGEND_BORDER: Rgb = [0xBF, 0xBF, 0xBF];

/// Series line width, user units.
const SERIES_WIDTH: f64 = 2.0;
/// Reference line width, user units.
const REFERENCE_WIDTH: f64 = 1.25;
/// Reference line dashes (on, off), user units, round caps.
const REFERENCE_DASH: &[f64] = &[3.0, 4.5];
const TICK_LEN: f64 = 5.0;
/// Font size of all text, user units (the SVG's `font-size`; the PNG's bitmap face).
const FONT_PX: f64 = font::BASE_PX as f64;
/// Height of digits and capitals above the baseline at [`FONT_PX`], user units.
const CAP_HEIGHT: f64 = 9.5;
const FONT_FAMILY: &str = "DejaVu Sans, Arial, sans-serif";

/// How a series' line is dashed. Patterns are in user units with round caps, sized for a
/// 2-unit line so that they differ in greyscale too.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LineStyle {
    #[default]
    Solid,
    Dashed,
    Dotted,
    DashDot,
}

impl LineStyle {
    /// The `i`-th style of the cycle Solid, Dashed, Dotted, DashDot.
    pub fn cycle(i: usize) -> Self {
        [Self::Solid, Self::Dashed, Self::Dotted, Self::DashDot][i % 4]
    }

    /// Dash array (on, off, …) along the line, user units; empty = solid. Round caps add the
    /// line width to each "on" and take it from each "off". Dots are 0.5 long, not 0: cairo
    /// (rsvg) drops 0-long dashes inside a longer dash array.
    fn dash(self) -> &'static [f64] {
        match self {
            Self::Solid => &[],
            Self::Dashed => &[7.0, 5.0],
            Self::Dotted => &[0.5, 4.5],
            Self::DashDot => &[7.0, 4.5, 0.5, 4.5],
        }
    }
}

/// One curve: its legend label, its points in data units and its dash pattern. Its colour is
/// its index in [`Chart::series`] (see [`series_colour`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
    pub style: LineStyle,
}

/// A line chart with both axes fixed to [0, 1].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
    /// Draw the dashed grey line y = x (chance for ROC curves).
    pub diagonal: bool,
    /// A dashed grey line y = value with its legend label (e.g. prevalence for PR curves);
    /// drawn only for a finite value in [0, 1]; an empty label gets no legend entry.
    pub hline: Option<(f64, String)>,
}

impl Chart {
    /// The chart as a standalone SVG 1.1 document (UTF-8).
    pub fn to_svg(&self) -> String {
        svg(&self.layout())
    }

    /// The chart as a PNG (8-bit RGB) of `WIDTH_PX·s` × `HEIGHT_PX·s` pixels, where
    /// `s = scale.clamp(1, MAX_SCALE)`.
    pub fn to_png(&self, scale: u32) -> Vec<u8> {
        let s = scale.clamp(1, MAX_SCALE);
        let canvas = raster(&self.layout(), s);
        super::png::encode_rgb(canvas.w as u32, canvas.h as u32, &canvas.rgb)
    }

    fn layout(&self) -> Vec<Item> {
        let mut items = Vec::new();
        let (x0, y0, x1, y1) = (PLOT_X0, PLOT_Y0, PLOT_X0 + PLOT_SIZE, PLOT_Y0 + PLOT_SIZE);
        let (w, h) = (f64::from(WIDTH_PX), f64::from(HEIGHT_PX));
        items.push(Item::rect(0.0, 0.0, w, h, WHITE));

        // Grid on the inner ticks (the outer ones are the frame).
        for k in 1..5 {
            let (gx, gy) = plot_px(f64::from(k) / 5.0, f64::from(k) / 5.0);
            items.push(Item::rect(gx - 0.5, y0, gx + 0.5, y1, GRID));
            items.push(Item::rect(x0, gy - 0.5, x1, gy + 0.5, GRID));
        }
        // Frame: four one-unit bars centred on the plot edges.
        items.push(Item::rect(x0 - 0.5, y0 - 0.5, x1 + 0.5, y0 + 0.5, INK));
        items.push(Item::rect(x0 - 0.5, y1 - 0.5, x1 + 0.5, y1 + 0.5, INK));
        items.push(Item::rect(x0 - 0.5, y0 - 0.5, x0 + 0.5, y1 + 0.5, INK));
        items.push(Item::rect(x1 - 0.5, y0 - 0.5, x1 + 0.5, y1 + 0.5, INK));
        // Ticks and their labels.
        for k in 0..=5 {
            let v = f64::from(k) / 5.0;
            let (tx, ty) = plot_px(v, v);
            let label = format!("{v:.1}");
            items.push(Item::rect(
                tx - 0.5,
                y1 + 0.5,
                tx + 0.5,
                y1 + 0.5 + TICK_LEN,
                INK,
            ));
            items.push(Item::text(
                tx,
                y1 + TICK_LEN + 5.0 + CAP_HEIGHT,
                &label,
                Anchor::Middle,
            ));
            items.push(Item::rect(
                x0 - 0.5 - TICK_LEN,
                ty - 0.5,
                x0 - 0.5,
                ty + 0.5,
                INK,
            ));
            items.push(Item::text(
                x0 - TICK_LEN - 4.0,
                (ty + CAP_HEIGHT / 2.0).round(),
                &label,
                Anchor::End,
            ));
        }
        let tick_label_w = text_width("0.0");

        // Reference lines, then the series on top.
        let mut legend: Vec<(String, Rgb, f64, &'static [f64])> = Vec::new();
        if self.diagonal {
            items.push(Item::line(
                vec![plot_px(0.0, 0.0), plot_px(1.0, 1.0)],
                REFERENCE,
                REFERENCE_WIDTH,
                REFERENCE_DASH,
            ));
        }
        if let Some((v, label)) = &self.hline {
            if v.is_finite() && (0.0..=1.0).contains(v) {
                items.push(Item::line(
                    vec![plot_px(0.0, *v), plot_px(1.0, *v)],
                    REFERENCE,
                    REFERENCE_WIDTH,
                    REFERENCE_DASH,
                ));
                if !label.is_empty() {
                    legend.push((label.clone(), REFERENCE, REFERENCE_WIDTH, REFERENCE_DASH));
                }
            }
        }
        let mut series_legend = Vec::new();
        for (i, s) in self.series.iter().enumerate() {
            let colour = series_colour(i);
            for piece in clip_pieces(&s.points) {
                let pts = piece.iter().map(|&(x, y)| plot_px(x, y)).collect();
                items.push(Item::line(pts, colour, SERIES_WIDTH, s.style.dash()));
            }
            if !s.label.is_empty() {
                series_legend.push((s.label.clone(), colour, SERIES_WIDTH, s.style.dash()));
            }
        }
        // Series first, the reference line last.
        series_legend.append(&mut legend);
        self.push_legend(&mut items, &series_legend);

        // Titles.
        let mid = (x0 + x1) / 2.0;
        if !self.title.is_empty() {
            items.push(Item::text(mid, 28.0, &self.title, Anchor::Middle));
        }
        if !self.x_label.is_empty() {
            let base = y1 + TICK_LEN + 5.0 + CAP_HEIGHT + 22.0;
            items.push(Item::text(mid, base.round(), &self.x_label, Anchor::Middle));
        }
        if !self.y_label.is_empty() {
            // Rotated 90° counter-clockwise; the baseline is the vertical x = bx, glyphs to its
            // left, clear of the tick labels by 8 units.
            let bx = (x0 - TICK_LEN - 4.0 - tick_label_w - 8.0 - 3.0).round();
            let mut t = Item::text(bx, (y0 + y1) / 2.0, &self.y_label, Anchor::Middle);
            if let Item::Text { vertical, .. } = &mut t {
                *vertical = true;
            }
            items.push(t);
        }
        items
    }

    /// Legend box inside the plot: rows of (line sample, label), in the corner that covers the
    /// fewest samples of the plotted lines (ties: lower right, lower left, upper right, upper
    /// left).
    fn push_legend(&self, items: &mut Vec<Item>, entries: &[(String, Rgb, f64, &'static [f64])]) {
        if entries.is_empty() {
            return;
        }
        const PAD: f64 = 8.0;
        const ROW: f64 = 18.0;
        const SAMPLE: f64 = 28.0;
        const GAP: f64 = 7.0;
        const INSET: f64 = 9.0;
        let text_w = entries.iter().map(|e| text_width(&e.0)).fold(0.0, f64::max);
        let bw = (PAD + SAMPLE + GAP + text_w + PAD).ceil();
        let bh = (2.0 * PAD - 4.0 + ROW * entries.len() as f64).ceil();
        let (x0, y0) = ((PLOT_X0 + 0.5).ceil(), (PLOT_Y0 + 0.5).ceil());
        let (x1, y1) = (
            (PLOT_X0 + PLOT_SIZE - 0.5).floor(),
            (PLOT_Y0 + PLOT_SIZE - 0.5).floor(),
        );
        let corners = [
            (x1 - INSET - bw, y1 - INSET - bh),
            (x0 + INSET, y1 - INSET - bh),
            (x1 - INSET - bw, y0 + INSET),
            (x0 + INSET, y0 + INSET),
        ];
        let mut best = (usize::MAX, corners[0]);
        for &(cx, cy) in &corners {
            let n = samples_inside(items, cx - 3.0, cy - 3.0, cx + bw + 3.0, cy + bh + 3.0);
            if n < best.0 {
                best = (n, (cx, cy));
            }
        }
        let (bx, by) = best.1;
        items.push(Item::Rect {
            x0: bx,
            y0: by,
            x1: bx + bw,
            y1: by + bh,
            fill: WHITE,
            opacity: 0.88,
        });
        let c = LEGEND_BORDER;
        items.push(Item::rect(bx, by, bx + bw, by + 1.0, c));
        items.push(Item::rect(bx, by + bh - 1.0, bx + bw, by + bh, c));
        items.push(Item::rect(bx, by + 1.0, bx + 1.0, by + bh - 1.0, c));
        items.push(Item::rect(
            bx + bw - 1.0,
            by + 1.0,
            bx + bw,
            by + bh - 1.0,
            c,
        ));
        for (i, (label, colour, width, dash)) in entries.iter().enumerate() {
            let mid = by + PAD - 2.0 + ROW * (i as f64 + 0.5);
            let sx = bx + PAD + width / 2.0;
            items.push(Item::line(
                vec![(sx, mid), (sx + SAMPLE - width, mid)],
                *colour,
                *width,
                dash,
            ));
            let base = (mid + CAP_HEIGHT / 2.0).round();
            items.push(Item::text(
                bx + PAD + SAMPLE + GAP,
                base,
                label,
                Anchor::Start,
            ));
        }
    }
}

/// Counts points every 2 user units along the lines already in `items` inside the box.
fn samples_inside(items: &[Item], x0: f64, y0: f64, x1: f64, y1: f64) -> usize {
    let mut n = 0;
    for item in items {
        let Item::Line { points, .. } = item else {
            continue;
        };
        for w in points.windows(2) {
            let (a, b) = (w[0], w[1]);
            let len = ((b.0 - a.0).powi(2) + (b.1 - a.1).powi(2)).sqrt();
            let steps = (len / 2.0).ceil().clamp(1.0, 1e6) as usize;
            for k in 0..=steps {
                let t = k as f64 / steps as f64;
                let (x, y) = (a.0 + (b.0 - a.0) * t, a.1 + (b.1 - a.1) * t);
                if x >= x0 && x <= x1 && y >= y0 && y <= y1 {
                    n += 1;
                }
            }
        }
    }
    n
}

/// Splits a data polyline into pieces clipped to [0, 1]²: a non-finite point, or leaving the
/// square, ends a piece. Each piece has at least two points.
fn clip_pieces(points: &[(f64, f64)]) -> Vec<Vec<(f64, f64)>> {
    let mut pieces: Vec<Vec<(f64, f64)>> = Vec::new();
    let mut current: Vec<(f64, f64)> = Vec::new();
    // Whether the last segment kept its end point (so the next one may continue the piece).
    let mut joined = false;
    let finite = |p: &(f64, f64)| p.0.is_finite() && p.1.is_finite();
    for w in points.windows(2) {
        let (a, b) = (w[0], w[1]);
        let clipped = if finite(&a) && finite(&b) {
            clip_segment(a, b)
        } else {
            None
        };
        match clipped {
            Some(Clipped {
                p,
                q,
                starts_at_a,
                ends_at_b,
            }) => {
                if !(joined && starts_at_a) {
                    flush(&mut pieces, &mut current);
                    current.push(p);
                }
                current.push(q);
                joined = ends_at_b;
            }
            None => {
                flush(&mut pieces, &mut current);
                joined = false;
            }
        }
    }
    flush(&mut pieces, &mut current);
    pieces
}

fn flush(pieces: &mut Vec<Vec<(f64, f64)>>, current: &mut Vec<(f64, f64)>) {
    if current.len() >= 2 {
        pieces.push(std::mem::take(current));
    } else {
        current.clear();
    }
}

/// Liang–Barsky clip of a→b to [0, 1]²: the kept part and whether it starts at a / ends at b.
fn clip_segment(a: (f64, f64), b: (f64, f64)) -> Option<Clipped> {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    if !dx.is_finite() || !dy.is_finite() {
        return None;
    }
    let (mut t0, mut t1) = (0.0_f64, 1.0_f64);
    for (p, q) in [(-dx, a.0), (dx, 1.0 - a.0), (-dy, a.1), (dy, 1.0 - a.1)] {
        if p == 0.0 {
            if q < 0.0 {
                return None;
            }
        } else {
            let r = q / p;
            if p < 0.0 {
                t0 = t0.max(r);
            } else {
                t1 = t1.min(r);
            }
        }
    }
    if t0 > t1 || t0.is_nan() || t1.is_nan() {
        return None;
    }
    let at = |t: f64| {
        (
            (a.0 + dx * t).clamp(0.0, 1.0),
            (a.1 + dy * t).clamp(0.0, 1.0),
        )
    };
    let (p, q) = (
        if t0 == 0.0 { a } else { at(t0) },
        if t1 == 1.0 { b } else { at(t1) },
    );
    Some(Clipped {
        p,
        q,
        starts_at_a: t0 == 0.0,
        ends_at_b: t1 == 1.0,
    })
}

/// A segment clipped to [0, 1]²: its kept part p→q and whether that starts at the original
/// start / ends at the original end.
struct Clipped {
    p: (f64, f64),
    q: (f64, f64),
    starts_at_a: bool,
    ends_at_b: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Anchor {
    Start,
    Middle,
    End,
}

impl Anchor {
    /// Fraction of the text width that lies before the anchor point.
    fn shift(self) -> f64 {
        match self {
            Anchor::Start => 0.0,
            Anchor::Middle => 0.5,
            Anchor::End => 1.0,
        }
    }
}

/// A drawing primitive in user units (both back ends draw exactly these).
#[derive(Clone, Debug)]
enum Item {
    /// Filled axis-aligned rectangle [x0, x1] × [y0, y1].
    Rect {
        x0: f64,
        y0: f64,
        x1: f64,
        y1: f64,
        fill: Rgb,
        opacity: f64,
    },
    /// Open polyline, round caps and joins; `dash` empty = solid.
    Line {
        points: Vec<(f64, f64)>,
        colour: Rgb,
        width: f64,
        dash: &'static [f64],
    },
    /// Text at [`FONT_PX`]; (x, y) is the anchor on the baseline. `vertical`: rotated 90°
    /// counter-clockwise about (x, y) (reads bottom to top).
    Text {
        x: f64,
        y: f64,
        text: String,
        anchor: Anchor,
        vertical: bool,
        colour: Rgb,
    },
}

impl Item {
    fn rect(x0: f64, y0: f64, x1: f64, y1: f64, fill: Rgb) -> Self {
        Item::Rect {
            x0,
            y0,
            x1,
            y1,
            fill,
            opacity: 1.0,
        }
    }

    fn line(points: Vec<(f64, f64)>, colour: Rgb, width: f64, dash: &'static [f64]) -> Self {
        Item::Line {
            points,
            colour,
            width,
            dash,
        }
    }

    fn text(x: f64, y: f64, text: &str, anchor: Anchor) -> Self {
        Item::Text {
            x,
            y,
            text: clean_text(text),
            anchor,
            vertical: false,
            colour: INK,
        }
    }
}

/// Replaces characters that XML 1.0 forbids or that have no place on one line (controls,
/// U+FFFE, U+FFFF) with "?".
fn clean_text(s: &str) -> String {
    s.chars()
        .map(|c| {
            if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' {
                '?'
            } else {
                c
            }
        })
        .collect()
}

/// Index into the font tables; characters not in the font get "?".
fn glyph_index(c: char) -> usize {
    font::CHARS
        .iter()
        .position(|&k| k == c)
        .or_else(|| font::CHARS.iter().position(|&k| k == '?'))
        .unwrap_or(0)
}

/// Advance width of `s` at [`FONT_PX`], user units (no kerning).
fn text_width(s: &str) -> f64 {
    s.chars()
        .map(|c| f64::from(font::ADVANCE_64[glyph_index(c)]) / 64.0)
        .sum()
}

// ---------------------------------------------------------------------------------------------
// SVG back end.

fn svg(items: &[Item]) -> String {
    let mut o = String::new();
    let (w, h) = (WIDTH_PX, HEIGHT_PX);
    o.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"no\"?>\n");
    let _ = writeln!(
        o,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"{w}\" \
         height=\"{h}\" viewBox=\"0 0 {w} {h}\">"
    );
    let _ = writeln!(
        o,
        "<g font-family=\"{FONT_FAMILY}\" font-size=\"{}\" xml:space=\"preserve\">",
        num(FONT_PX)
    );
    for item in items {
        match item {
            Item::Rect {
                x0,
                y0,
                x1,
                y1,
                fill,
                opacity,
            } => {
                let _ = write!(
                    o,
                    "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\"",
                    num(*x0),
                    num(*y0),
                    num(x1 - x0),
                    num(y1 - y0),
                    hex(*fill)
                );
                if *opacity < 1.0 {
                    let _ = write!(o, " fill-opacity=\"{}\"", num(*opacity));
                }
                o.push_str("/>\n");
            }
            Item::Line {
                points,
                colour,
                width,
                dash,
            } => {
                o.push_str("<polyline points=\"");
                for (i, (x, y)) in points.iter().enumerate() {
                    if i > 0 {
                        o.push(' ');
                    }
                    let _ = write!(o, "{},{}", num(*x), num(*y));
                }
                let _ = write!(
                    o,
                    "\" fill=\"none\" stroke=\"{}\" stroke-width=\"{}\" \
                     stroke-linecap=\"round\" stroke-linejoin=\"round\"",
                    hex(*colour),
                    num(*width)
                );
                if !dash.is_empty() {
                    let d: Vec<String> = dash.iter().map(|v| num(*v)).collect();
                    let _ = write!(o, " stroke-dasharray=\"{}\"", d.join(" "));
                }
                o.push_str("/>\n");
            }
            Item::Text {
                x,
                y,
                text,
                anchor,
                vertical,
                colour,
            } => {
                let _ = write!(o, "<text x=\"{}\" y=\"{}\"", num(*x), num(*y));
                match anchor {
                    Anchor::Start => {}
                    Anchor::Middle => o.push_str(" text-anchor=\"middle\""),
                    Anchor::End => o.push_str(" text-anchor=\"end\""),
                }
                if *vertical {
                    let _ = write!(o, " transform=\"rotate(-90 {} {})\"", num(*x), num(*y));
                }
                let _ = writeln!(o, " fill=\"{}\">{}</text>", hex(*colour), escape(text));
            }
        }
    }
    o.push_str("</g>\n</svg>\n");
    o
}

/// XML escape for text and double-quoted attribute values.
fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            _ => o.push(c),
        }
    }
    o
}

fn hex(c: Rgb) -> String {
    format!("#{:02x}{:02x}{:02x}", c[0], c[1], c[2])
}

/// A coordinate with at most 2 decimals, no trailing zeros.
fn num(v: f64) -> String {
    let s = format!("{:.2}", if v.is_finite() { v } else { 0.0 });
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" || s.is_empty() {
        "0".to_string()
    } else {
        s.to_string()
    }
}

// ---------------------------------------------------------------------------------------------
// PNG back end: coverage rasteriser.

struct Canvas {
    w: usize,
    h: usize,
    rgb: Vec<u8>,
}

impl Canvas {
    /// Blends `c` over pixel (x, y) with opacity `a` ∈ [0, 1] (in sRGB values, as SVG
    /// renderers do).
    fn blend(&mut self, x: usize, y: usize, c: Rgb, a: f32) {
        if x >= self.w || y >= self.h || a <= 0.0 {
            return;
        }
        let a = a.min(1.0);
        let i = (y * self.w + x) * 3;
        for k in 0..3 {
            let old = f32::from(self.rgb[i + k]);
            let new = old + (f32::from(c[k]) - old) * a;
            self.rgb[i + k] = new.round().clamp(0.0, 255.0) as u8;
        }
    }

    /// Fills [x0, x1] × [y0, y1] (device pixels), partial pixels by their covered area.
    fn fill_rect(&mut self, x0: f64, y0: f64, x1: f64, y1: f64, c: Rgb, opacity: f64) {
        let (x0, x1) = (x0.max(0.0), x1.min(self.w as f64));
        let (y0, y1) = (y0.max(0.0), y1.min(self.h as f64));
        if !(x0 < x1 && y0 < y1) {
            return;
        }
        for py in y0.floor() as usize..(y1.ceil() as usize).min(self.h) {
            let cy = (y1.min(py as f64 + 1.0) - y0.max(py as f64)).max(0.0);
            for px in x0.floor() as usize..(x1.ceil() as usize).min(self.w) {
                let cx = (x1.min(px as f64 + 1.0) - x0.max(px as f64)).max(0.0);
                self.blend(px, py, c, (cx * cy * opacity) as f32);
            }
        }
    }
}

/// Per-pixel coverage of one stroke; the maximum over its pieces, so joins and overlapping
/// dashes do not darken.
struct Coverage {
    w: usize,
    h: usize,
    cov: Vec<f32>,
    /// Touched box (x0, y0, x1, y1), exclusive ends.
    dirty: Option<(usize, usize, usize, usize)>,
}

impl Coverage {
    fn new(w: usize, h: usize) -> Self {
        Coverage {
            w,
            h,
            cov: vec![0.0; w * h],
            dirty: None,
        }
    }

    /// A capsule (segment a→b with round ends) of half width `hw`, device pixels.
    fn capsule(&mut self, a: (f64, f64), b: (f64, f64), hw: f64) {
        let r = hw + 1.0;
        let bx0 = (a.0.min(b.0) - r).floor().max(0.0);
        let by0 = (a.1.min(b.1) - r).floor().max(0.0);
        let bx1 = (a.0.max(b.0) + r).ceil().min(self.w as f64);
        let by1 = (a.1.max(b.1) + r).ceil().min(self.h as f64);
        if !(bx0 < bx1 && by0 < by1) {
            return; // off canvas, or NaN
        }
        let (bx0, by0, bx1, by1) = (bx0 as usize, by0 as usize, bx1 as usize, by1 as usize);
        let (dx, dy) = (b.0 - a.0, b.1 - a.1);
        let len2 = dx * dx + dy * dy;
        // Lines thinner than a pixel: full width profile, fainter.
        let (hw_eff, gain) = if hw < 0.5 {
            (0.5, (2.0 * hw) as f32)
        } else {
            (hw, 1.0)
        };
        for py in by0..by1 {
            let cy = py as f64 + 0.5;
            for px in bx0..bx1 {
                let cx = px as f64 + 0.5;
                let t = if len2 > 0.0 {
                    (((cx - a.0) * dx + (cy - a.1) * dy) / len2).clamp(0.0, 1.0)
                } else {
                    0.0
                };
                let (ex, ey) = (cx - (a.0 + t * dx), cy - (a.1 + t * dy));
                let d = (ex * ex + ey * ey).sqrt();
                let c = ((hw_eff + 0.5 - d).clamp(0.0, 1.0) as f32) * gain;
                let i = py * self.w + px;
                if c > self.cov[i] {
                    self.cov[i] = c;
                }
            }
        }
        self.dirty = Some(match self.dirty {
            None => (bx0, by0, bx1, by1),
            Some((x0, y0, x1, y1)) => (x0.min(bx0), y0.min(by0), x1.max(bx1), y1.max(by1)),
        });
    }

    /// Paints the coverage in `c` onto the canvas and clears it.
    fn composite(&mut self, canvas: &mut Canvas, c: Rgb) {
        let Some((x0, y0, x1, y1)) = self.dirty.take() else {
            return;
        };
        for py in y0..y1 {
            for px in x0..x1 {
                let i = py * self.w + px;
                let a = self.cov[i];
                if a > 0.0 {
                    canvas.blend(px, py, c, a);
                    self.cov[i] = 0.0;
                }
            }
        }
    }

    /// A polyline of half width `hw` with a dash array `dash` (device pixels), the pattern
    /// starting afresh at its first point.
    fn polyline(&mut self, pts: &[(f64, f64)], hw: f64, dash: &[f64]) {
        let total: f64 = dash.iter().sum();
        let usable =
            !dash.is_empty() && dash.iter().all(|d| d.is_finite() && *d >= 0.0) && total > 1e-3;
        if !usable {
            for w in pts.windows(2) {
                self.capsule(w[0], w[1], hw);
            }
            return;
        }
        let mut idx = 0;
        let mut left = dash[0];
        for w in pts.windows(2) {
            let (a, b) = (w[0], w[1]);
            let len = ((b.0 - a.0).powi(2) + (b.1 - a.1).powi(2)).sqrt();
            if !len.is_finite() {
                continue;
            }
            let at = |t: f64| {
                if len > 0.0 {
                    let f = t / len;
                    (a.0 + (b.0 - a.0) * f, a.1 + (b.1 - a.1) * f)
                } else {
                    a
                }
            };
            let mut t = 0.0;
            loop {
                let rem = len - t;
                if left <= rem {
                    if idx % 2 == 0 {
                        self.capsule(at(t), at(t + left), hw);
                    }
                    t += left;
                    idx = (idx + 1) % dash.len();
                    left = dash[idx];
                } else {
                    if idx % 2 == 0 && rem > 0.0 {
                        self.capsule(at(t), b, hw);
                    }
                    left -= rem;
                    break;
                }
            }
        }
    }
}

fn raster(items: &[Item], scale: u32) -> Canvas {
    let s = f64::from(scale);
    let (w, h) = ((WIDTH_PX * scale) as usize, (HEIGHT_PX * scale) as usize);
    let mut canvas = Canvas {
        w,
        h,
        rgb: vec![0xFF; w * h * 3],
    };
    let mut cov = Coverage::new(w, h);
    let (face, glyph_scale) = if scale == 1 {
        (&font::SMALL, 1.0)
    } else {
        (&font::LARGE, s * FONT_PX / f64::from(font::LARGE.size_px))
    };
    for item in items {
        match item {
            Item::Rect {
                x0,
                y0,
                x1,
                y1,
                fill,
                opacity,
            } => canvas.fill_rect(x0 * s, y0 * s, x1 * s, y1 * s, *fill, *opacity),
            Item::Line {
                points,
                colour,
                width,
                dash,
            } => {
                let pts: Vec<(f64, f64)> = points.iter().map(|&(x, y)| (x * s, y * s)).collect();
                let dash: Vec<f64> = dash.iter().map(|d| d * s).collect();
                cov.polyline(&pts, width * s / 2.0, &dash);
                cov.composite(&mut canvas, *colour);
            }
            Item::Text {
                x,
                y,
                text,
                anchor,
                vertical,
                colour,
            } => {
                let start = -anchor.shift() * text_width(text) * s;
                let mut pen = start;
                for c in text.chars() {
                    let gi = glyph_index(c);
                    // Glyph origin, rounded to whole device pixels so scale 1 copies exactly.
                    let (ox, oy) = if *vertical {
                        ((x * s).round(), (y * s - pen).round())
                    } else {
                        ((x * s + pen).round(), (y * s).round())
                    };
                    draw_glyph(
                        &mut canvas,
                        face,
                        gi,
                        glyph_scale,
                        (ox, oy),
                        *vertical,
                        *colour,
                    );
                    pen += f64::from(font::ADVANCE_64[gi]) / 64.0 * s;
                }
            }
        }
    }
    canvas
}

/// Draws glyph `gi` of `face` with its pen origin at device pixel corner `o`, its bitmap
/// scaled by `f` (bilinear), upright or rotated 90° counter-clockwise.
fn draw_glyph(
    canvas: &mut Canvas,
    face: &Face,
    gi: usize,
    f: f64,
    o: (f64, f64),
    vertical: bool,
    c: Rgb,
) {
    let Some(g) = face.glyphs.get(gi) else {
        return;
    };
    let (gw, gh) = (usize::from(g.w), usize::from(g.h));
    let off = g.offset as usize;
    let Some(bitmap) = face.alpha.get(off..off + gw * gh) else {
        return;
    };
    if gw == 0 || gh == 0 || f.is_nan() || f <= 0.0 {
        return;
    }
    let (left, top) = (f64::from(g.left), f64::from(g.top));
    // Text-space box (x along the baseline, y down), in face pixels.
    let (tx0, tx1, ty0, ty1) = (left, left + gw as f64, top, top + gh as f64);
    // Device box.
    let (dx0, dx1, dy0, dy1) = if vertical {
        (o.0 + f * ty0, o.0 + f * ty1, o.1 - f * tx1, o.1 - f * tx0)
    } else {
        (o.0 + f * tx0, o.0 + f * tx1, o.1 + f * ty0, o.1 + f * ty1)
    };
    let px0 = (dx0 - 1.0).floor().max(0.0) as usize;
    let py0 = (dy0 - 1.0).floor().max(0.0) as usize;
    let px1 = ((dx1 + 1.0).ceil().max(0.0) as usize).min(canvas.w);
    let py1 = ((dy1 + 1.0).ceil().max(0.0) as usize).min(canvas.h);
    let sample = |bx: f64, by: f64| -> f32 {
        // Bilinear, bitmap pixel centres at integers, zero outside.
        let (fx, fy) = (bx.floor(), by.floor());
        let (wx, wy) = ((bx - fx) as f32, (by - fy) as f32);
        let at = |ix: f64, iy: f64| -> f32 {
            if ix < 0.0 || iy < 0.0 || ix >= gw as f64 || iy >= gh as f64 {
                0.0
            } else {
                f32::from(bitmap[iy as usize * gw + ix as usize]) / 255.0
            }
        };
        let top = at(fx, fy) * (1.0 - wx) + at(fx + 1.0, fy) * wx;
        let bottom = at(fx, fy + 1.0) * (1.0 - wx) + at(fx + 1.0, fy + 1.0) * wx;
        top * (1.0 - wy) + bottom * wy
    };
    for py in py0..py1 {
        let cy = py as f64 + 0.5;
        for px in px0..px1 {
            let cx = px as f64 + 0.5;
            let (tx, ty) = if vertical {
                (-(cy - o.1) / f, (cx - o.0) / f)
            } else {
                ((cx - o.0) / f, (cy - o.1) / f)
            };
            let a = sample(tx - left - 0.5, ty - top - 0.5);
            canvas.blend(px, py, c, a);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_keeps_inside_and_breaks_at_nan() {
        let p = clip_pieces(&[
            (0.1, 0.1),
            (0.5, 0.5),
            (f64::NAN, 0.2),
            (0.6, 0.6),
            (0.7, 0.8),
        ]);
        assert_eq!(
            p,
            vec![vec![(0.1, 0.1), (0.5, 0.5)], vec![(0.6, 0.6), (0.7, 0.8)]]
        );
        let p = clip_pieces(&[(-1.0, 0.5), (2.0, 0.5)]);
        assert_eq!(p, vec![vec![(0.0, 0.5), (1.0, 0.5)]]);
        // Leaves the square and comes back: two pieces.
        let p = clip_pieces(&[(0.5, 0.5), (0.5, 1.5), (0.6, 0.5)]);
        assert_eq!(p.len(), 2);
        assert!(clip_pieces(&[(2.0, 2.0), (3.0, 3.0)]).is_empty());
        assert!(clip_pieces(&[(f64::MAX, 0.0), (-f64::MAX, 0.5)]).len() <= 1);
    }

    #[test]
    fn dash_walk_terminates_on_zero_length_segments() {
        let mut cov = Coverage::new(20, 20);
        cov.polyline(&[(5.0, 5.0), (5.0, 5.0), (15.0, 5.0)], 1.0, &[0.0, 3.0]);
        assert!(cov.dirty.is_some());
    }

    #[test]
    fn num_formats_compactly() {
        assert_eq!(num(72.5), "72.5");
        assert_eq!(num(3.0), "3");
        assert_eq!(num(-0.001), "0");
        assert_eq!(num(f64::NAN), "0");
    }
}
