//! `report::chart`: the PNG decodes (own minimal decoder: chunk CRCs, zlib, filter 0) to the
//! documented size with each series' colour where its points map; the SVG is well-formed XML
//! (own small checker) with every legend label; degenerate input (no series, NaN/inf, points
//! outside [0, 1], markup characters in text) gives a valid chart without panicking.
//!
//! `NEPHROD_CHART_EXAMPLE_DIR=/tmp cargo test --test report_chart example` writes
//! chart_example.png (scale 2) and chart_example.svg there for a look by eye.

use std::io::Read;

use nephrod::report::chart::{
    plot_px, series_colour, Chart, LineStyle, Series, HEIGHT_PX, MAX_SCALE, WIDTH_PX,
};

// ---------------------------------------------------------------------------------------------
// Minimal PNG decoder (8-bit RGB, non-interlaced, filter 0 only — what the chart writes).

struct Image {
    w: usize,
    h: usize,
    rgb: Vec<u8>,
}

impl Image {
    fn px(&self, x: usize, y: usize) -> [u8; 3] {
        let i = (y * self.w + x) * 3;
        [self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]]
    }

    /// Is there a pixel within `dist` (max channel difference) of `c` in the box
    /// [x0, x1] × [y0, y1] (device pixels, inclusive)?
    fn has_colour_near(&self, c: [u8; 3], x0: f64, y0: f64, x1: f64, y1: f64, dist: u8) -> bool {
        let clampx = |v: f64| (v.max(0.0) as usize).min(self.w - 1);
        let clampy = |v: f64| (v.max(0.0) as usize).min(self.h - 1);
        for y in clampy(y0)..=clampy(y1) {
            for x in clampx(x0)..=clampx(x1) {
                if colour_dist(self.px(x, y), c) <= dist {
                    return true;
                }
            }
        }
        false
    }
}

fn colour_dist(a: [u8; 3], b: [u8; 3]) -> u8 {
    (0..3).map(|k| a[k].abs_diff(b[k])).max().unwrap_or(0)
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn decode_png(bytes: &[u8]) -> Result<Image, String> {
    const SIG: &[u8] = b"\x89PNG\r\n\x1a\n";
    if !bytes.starts_with(SIG) {
        return Err("no PNG signature".into());
    }
    let mut pos = SIG.len();
    let (mut w, mut h) = (0usize, 0usize);
    let mut idat = Vec::new();
    let mut seen_ihdr = false;
    let mut seen_iend = false;
    while pos < bytes.len() {
        if pos + 12 > bytes.len() {
            return Err(format!("truncated chunk header at {pos}"));
        }
        let len = be32(&bytes[pos..]) as usize;
        let kind = &bytes[pos + 4..pos + 8];
        let end = pos + 8 + len;
        if end + 4 > bytes.len() {
            return Err(format!("chunk {kind:?} runs past the end"));
        }
        let data = &bytes[pos + 8..end];
        let mut crc = flate2::Crc::new();
        crc.update(kind);
        crc.update(data);
        if crc.sum() != be32(&bytes[end..]) {
            return Err(format!("bad CRC in {}", String::from_utf8_lossy(kind)));
        }
        match kind {
            b"IHDR" => {
                if seen_ihdr || pos != SIG.len() || len != 13 {
                    return Err("IHDR not first, twice or not 13 bytes".into());
                }
                seen_ihdr = true;
                w = be32(data) as usize;
                h = be32(&data[4..]) as usize;
                if data[8..13] != [8, 2, 0, 0, 0] {
                    return Err(format!("unexpected IHDR format {:?}", &data[8..13]));
                }
            }
            b"IDAT" => {
                if !seen_ihdr {
                    return Err("IDAT before IHDR".into());
                }
                idat.extend_from_slice(data);
            }
            b"IEND" => {
                seen_iend = true;
                if end + 4 != bytes.len() {
                    return Err("bytes after IEND".into());
                }
            }
            _ => return Err(format!("unexpected chunk {kind:?}")),
        }
        pos = end + 4;
    }
    if !seen_iend || w == 0 || h == 0 {
        return Err("missing IEND or empty image".into());
    }
    let mut raw = Vec::new();
    flate2::read::ZlibDecoder::new(&idat[..])
        .read_to_end(&mut raw)
        .map_err(|e| format!("inflate: {e}"))?;
    let row = 1 + 3 * w;
    if raw.len() != row * h {
        return Err(format!(
            "inflated {} bytes, expected {}",
            raw.len(),
            row * h
        ));
    }
    let mut rgb = Vec::with_capacity(3 * w * h);
    for r in raw.chunks(row) {
        if r[0] != 0 {
            return Err(format!("filter {} (only 0 is written)", r[0]));
        }
        rgb.extend_from_slice(&r[1..]);
    }
    Ok(Image { w, h, rgb })
}

// ---------------------------------------------------------------------------------------------
// Tiny XML well-formedness checker: one root, balanced tags, quoted attributes, no raw '<' or
// '&' outside markup/entities.

fn check_entity(s: &str, at: usize) -> Result<usize, String> {
    let rest = &s[at..];
    let semi = rest
        .find(';')
        .ok_or_else(|| format!("'&' without ';' at {at}"))?;
    let name = &rest[1..semi];
    let ok = matches!(name, "amp" | "lt" | "gt" | "quot" | "apos")
        || (name.starts_with("#x")
            && name.len() > 2
            && name[2..].chars().all(|c| c.is_ascii_hexdigit()))
        || (name.starts_with('#')
            && name.len() > 1
            && name[1..].chars().all(|c| c.is_ascii_digit()));
    if ok {
        Ok(at + semi + 1)
    } else {
        Err(format!("bad entity &{name}; at {at}"))
    }
}

fn check_text(s: &str, from: usize, to: usize) -> Result<(), String> {
    let mut i = from;
    while i < to {
        let c = s[i..].chars().next().unwrap_or(' ');
        if c == '&' {
            i = check_entity(s, i)?;
            continue;
        }
        if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') {
            return Err(format!("control character {:?} at {i}", c));
        }
        i += c.len_utf8();
    }
    Ok(())
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, ':' | '-' | '_' | '.')
}

fn check_xml(s: &str) -> Result<(), String> {
    let b = s.as_bytes();
    let mut i = 0;
    if s.starts_with("<?xml") {
        i = s.find("?>").ok_or("unterminated XML declaration")? + 2;
    }
    let mut stack: Vec<&str> = Vec::new();
    let mut roots = 0;
    while i < b.len() {
        if b[i] != b'<' {
            let next = s[i..].find('<').map_or(s.len(), |k| i + k);
            if stack.is_empty() && !s[i..next].trim().is_empty() {
                return Err(format!("text outside the root at {i}"));
            }
            check_text(s, i, next)?;
            i = next;
            continue;
        }
        let close = s[i..].find('>').ok_or("unterminated tag")? + i;
        let tag = &s[i + 1..close];
        if let Some(name) = tag.strip_prefix('/') {
            let open = stack.pop().ok_or_else(|| format!("stray </{name}>"))?;
            if open != name.trim() {
                return Err(format!("<{open}> closed by </{name}>"));
            }
        } else {
            let self_closing = tag.ends_with('/');
            let body = tag.trim_end_matches('/');
            let name_end = body.find(|c: char| !is_name_char(c)).unwrap_or(body.len());
            let name = &body[..name_end];
            if name.is_empty() {
                return Err(format!("empty tag name at {i}"));
            }
            // Attributes: name="value" pairs, values without '<', entities valid.
            let mut rest = body[name_end..].trim_start();
            let mut seen = Vec::new();
            while !rest.is_empty() {
                let eq = rest
                    .find('=')
                    .ok_or_else(|| format!("attribute without '=' in <{name}>"))?;
                let an = rest[..eq].trim();
                if an.is_empty() || !an.chars().all(is_name_char) || seen.contains(&an) {
                    return Err(format!("bad or repeated attribute {an:?} in <{name}>"));
                }
                seen.push(an);
                let after = rest[eq + 1..].trim_start();
                let q = after.chars().next().ok_or("attribute without value")?;
                if q != '"' && q != '\'' {
                    return Err(format!("unquoted attribute {an} in <{name}>"));
                }
                let vend = after[1..].find(q).ok_or("unterminated attribute value")? + 1;
                let value = &after[1..vend];
                if value.contains('<') {
                    return Err(format!("'<' in attribute {an}"));
                }
                check_text(value, 0, value.len())?;
                rest = after[vend + 1..].trim_start();
            }
            if stack.is_empty() {
                roots += 1;
            }
            if !self_closing {
                stack.push(name);
            }
        }
        i = close + 1;
    }
    if !stack.is_empty() {
        return Err(format!("unclosed elements {stack:?}"));
    }
    if roots != 1 {
        return Err(format!("{roots} root elements"));
    }
    Ok(())
}

#[test]
fn xml_checker_rejects_what_it_should() {
    assert!(check_xml("<a><b/></a>").is_ok());
    assert!(check_xml("<a><b></a>").is_err());
    assert!(check_xml("<a>x & y</a>").is_err());
    assert!(check_xml("<a>x &amp; y</a>").is_ok());
    assert!(check_xml("<a x=1/>").is_err());
    assert!(check_xml("<a/><b/>").is_err());
    assert!(check_xml("<a t=\"<\"/>").is_err());
}

// ---------------------------------------------------------------------------------------------

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn roc_like() -> Chart {
    // A concave ROC-like curve per class, plus "macro".
    let curve = |k: f64| -> Vec<(f64, f64)> {
        (0..=50)
            .map(|i| {
                let x = f64::from(i) / 50.0;
                (x, 1.0 - (1.0 - x).powf(k))
            })
            .collect()
    };
    let labels = [
        "ccRCC AUC 0.912 (0.871–0.948)",
        "pRCC AUC 0.843 (0.790–0.889)",
        "chRCC AUC 0.801 (0.722–0.867)",
        "oncocytoma AUC 0.744 (0.650–0.829)",
        "macro AUC 0.825 ± 0.06",
    ];
    let ks = [8.0, 5.0, 3.5, 2.5, 4.5];
    Chart {
        title: "ROC, test set (n = 212)".into(),
        x_label: "False positive rate".into(),
        y_label: "True positive rate".into(),
        series: labels
            .iter()
            .zip(ks)
            .enumerate()
            .map(|(i, (l, k))| Series {
                label: (*l).into(),
                points: curve(k),
                style: LineStyle::cycle(i),
            })
            .collect(),
        diagonal: true,
        hline: None,
    }
}

/// Three horizontal series in the upper half (the legend goes below them).
fn bars() -> Chart {
    let styles = [LineStyle::Solid, LineStyle::Dashed, LineStyle::Dotted];
    Chart {
        title: "Bars".into(),
        x_label: "x".into(),
        y_label: "y".into(),
        series: [0.8, 0.7, 0.6]
            .iter()
            .zip(styles)
            .enumerate()
            .map(|(i, (&y, style))| Series {
                label: format!("series {i}"),
                points: vec![(0.05, y), (0.95, y)],
                style,
            })
            .collect(),
        diagonal: false,
        hline: Some((0.3, "prevalence 0.30".into())),
    }
}

#[test]
fn png_has_documented_size_at_each_scale() {
    let chart = roc_like();
    for (scale, expect) in [(1, 1), (2, 2), (0, 1), (3, 3)] {
        let img = decode_png(&chart.to_png(scale)).unwrap();
        assert_eq!(
            (img.w, img.h),
            ((WIDTH_PX * expect) as usize, (HEIGHT_PX * expect) as usize)
        );
    }
    let img = decode_png(&Chart::default().to_png(u32::MAX)).unwrap();
    assert_eq!(img.w, (WIDTH_PX * MAX_SCALE) as usize);
}

#[test]
fn png_has_each_series_colour_where_its_points_map() {
    let chart = bars();
    for scale in [1u32, 2] {
        let s = f64::from(scale);
        let img = decode_png(&chart.to_png(scale)).unwrap();
        for (i, series) in chart.series.iter().enumerate() {
            let (x, y) = plot_px(0.5, series.points[0].1);
            let (x, y) = (x * s, y * s);
            // Dashes: look along ±12 units of the line, ±1 unit across.
            assert!(
                img.has_colour_near(
                    series_colour(i),
                    x - 12.0 * s,
                    y - s,
                    x + 12.0 * s,
                    y + s,
                    24
                ),
                "series {i} colour missing near ({x}, {y}) at scale {scale}"
            );
            // And not 10 units above or below (the lines are 2 wide).
            let off = 10.0 * s;
            for yy in [y - off, y + off] {
                assert!(!img.has_colour_near(
                    series_colour(i),
                    x - 12.0 * s,
                    yy,
                    x + 12.0 * s,
                    yy,
                    24
                ));
            }
        }
        // The reference line is there too (grey, dashed).
        let (x, y) = plot_px(0.5, 0.3);
        let (x, y) = (x * s, y * s);
        assert!(img.has_colour_near([0x8C; 3], x - 12.0 * s, y - s, x + 12.0 * s, y + s, 30));
        // Background inside the plot away from lines and grid is white.
        let (x, y) = plot_px(0.3, 0.5);
        assert_eq!(img.px((x * s) as usize, (y * s) as usize), [255; 3]);
    }
}

#[test]
fn dash_patterns_leave_gaps_and_solid_does_not() {
    let img = decode_png(&bars().to_png(1)).unwrap();
    let mut gaps = Vec::new();
    for (i, y) in [0.8, 0.7, 0.6].into_iter().enumerate() {
        let (x0, py) = plot_px(0.2, y);
        let (x1, _) = plot_px(0.8, y);
        let c = series_colour(i);
        let n = (x0 as usize..x1 as usize)
            .filter(|&x| colour_dist(img.px(x, py as usize), c) > 100)
            .count();
        gaps.push(n);
    }
    assert_eq!(gaps[0], 0, "solid line has gaps: {gaps:?}");
    assert!(
        gaps[1] > 30 && gaps[2] > 30,
        "dashed/dotted lines look solid: {gaps:?}"
    );
}

#[test]
fn svg_and_png_lay_out_the_same_lines() {
    // Every SVG polyline's first point is covered by its stroke colour in the PNG at scale 2.
    let chart = bars();
    let svg = chart.to_svg();
    let img = decode_png(&chart.to_png(2)).unwrap();
    let mut checked = 0;
    for line in svg.lines().filter(|l| l.starts_with("<polyline")) {
        let attr = |name: &str| -> String {
            let k = line.find(&format!(" {name}=\"")).unwrap() + name.len() + 3;
            line[k..k + line[k..].find('"').unwrap()].to_string()
        };
        let first = attr("points").split(' ').next().unwrap().to_string();
        let (x, y) = first.split_once(',').unwrap();
        let (x, y): (f64, f64) = (x.parse().unwrap(), y.parse().unwrap());
        let stroke = attr("stroke");
        let c = [1, 3, 5].map(|k| u8::from_str_radix(&stroke[k..k + 2], 16).unwrap());
        assert!(
            img.has_colour_near(
                c,
                2.0 * x - 1.0,
                2.0 * y - 1.0,
                2.0 * x + 1.0,
                2.0 * y + 1.0,
                40
            ),
            "{stroke} not at ({x}, {y}) in the PNG"
        );
        checked += 1;
    }
    // 3 series + reference line, each also drawn as a legend sample.
    assert_eq!(checked, 8);
}

#[test]
fn text_is_drawn_in_the_png() {
    let dark = |img: &Image, y0: usize, y1: usize| {
        (y0..y1)
            .flat_map(|y| (0..img.w).map(move |x| (x, y)))
            .filter(|&(x, y)| img.px(x, y).iter().all(|&v| v < 100))
            .count()
    };
    let with = decode_png(&bars().to_png(1)).unwrap();
    let without = decode_png(
        &Chart {
            title: String::new(),
            ..bars()
        }
        .to_png(1),
    )
    .unwrap();
    // Title band: above the frame.
    assert!(dark(&with, 0, 40) > 20);
    assert_eq!(dark(&without, 0, 40), 0);
}

#[test]
fn svg_is_well_formed_and_has_every_label() {
    let chart = roc_like();
    let svg = chart.to_svg();
    check_xml(&svg).unwrap();
    assert!(svg.contains("xmlns=\"http://www.w3.org/2000/svg\""));
    assert!(svg.contains(&format!("viewBox=\"0 0 {WIDTH_PX} {HEIGHT_PX}\"")));
    assert!(svg.contains("font-family=\"DejaVu Sans, Arial, sans-serif\""));
    for s in &chart.series {
        assert!(
            svg.contains(&format!(">{}</text>", escape(&s.label))),
            "{}",
            s.label
        );
    }
    for t in [&chart.title, &chart.x_label, &chart.y_label] {
        assert!(svg.contains(&format!(">{}</text>", escape(t))), "{t}");
    }
    assert!(svg.contains("rotate(-90"));
}

#[test]
fn empty_chart_is_valid() {
    for chart in [
        Chart::default(),
        Chart {
            title: "nothing".into(),
            diagonal: true,
            ..Chart::default()
        },
        Chart {
            series: vec![Series::default()],
            ..Chart::default()
        },
    ] {
        check_xml(&chart.to_svg()).unwrap();
        let img = decode_png(&chart.to_png(1)).unwrap();
        assert_eq!((img.w, img.h), (WIDTH_PX as usize, HEIGHT_PX as usize));
        // The frame is there.
        let (x, y) = plot_px(0.0, 0.5);
        assert!(img.px(x as usize, y as usize).iter().all(|&v| v < 60));
    }
}

#[test]
fn non_finite_and_outside_points_are_skipped_or_clipped() {
    let chart = Chart {
        series: vec![
            Series {
                label: "all bad".into(),
                points: vec![
                    (f64::NAN, 0.5),
                    (f64::INFINITY, f64::INFINITY),
                    (0.2, f64::NEG_INFINITY),
                ],
                style: LineStyle::Dashed,
            },
            Series {
                label: "gap".into(),
                points: vec![
                    (0.1, 0.5),
                    (0.3, 0.5),
                    (f64::NAN, f64::NAN),
                    (0.6, 0.5),
                    (0.9, 0.5),
                ],
                style: LineStyle::Solid,
            },
            Series {
                label: "wide".into(),
                points: vec![(-5.0, 0.9), (5.0, 0.9), (f64::MAX, -f64::MAX), (1e300, 0.9)],
                style: LineStyle::Solid,
            },
        ],
        hline: Some((f64::NAN, "nan line".into())),
        ..Chart::default()
    };
    let svg = chart.to_svg();
    check_xml(&svg).unwrap();
    let lower = svg.to_lowercase();
    assert!(
        !lower.contains("nan\"") && !lower.contains("inf"),
        "non-finite number in SVG"
    );
    assert!(
        !svg.contains("nan line"),
        "a NaN reference line has no legend entry"
    );
    let img = decode_png(&chart.to_png(1)).unwrap();
    let gap = series_colour(1);
    let (x, y) = plot_px(0.2, 0.5);
    assert!(img.has_colour_near(gap, x - 1.0, y - 1.0, x + 1.0, y + 1.0, 10));
    let (x, _) = plot_px(0.45, 0.5);
    assert!(
        !img.has_colour_near(gap, x - 3.0, y - 3.0, x + 3.0, y + 3.0, 60),
        "NaN was bridged"
    );
    // Clipped at the frame: nothing of the wide line left of the plot.
    let wide = series_colour(2);
    let (x, y) = plot_px(0.5, 0.9);
    assert!(img.has_colour_near(wide, x - 1.0, y - 1.0, x + 1.0, y + 1.0, 10));
    let (x, _) = plot_px(0.0, 0.9);
    assert!(!img.has_colour_near(wide, 0.0, y - 3.0, x - 3.0, y + 3.0, 60));
}

#[test]
fn markup_in_text_is_escaped() {
    let chart = Chart {
        title: "a <&> b \"q\"".into(),
        x_label: "x<y".into(),
        y_label: "\u{1}ctrl".into(),
        series: vec![Series {
            label: "</text><script>".into(),
            points: vec![(0.0, 0.0), (1.0, 1.0)],
            style: LineStyle::DashDot,
        }],
        ..Chart::default()
    };
    let svg = chart.to_svg();
    check_xml(&svg).unwrap();
    assert!(svg.contains("a &lt;&amp;&gt; b &quot;q&quot;"));
    assert!(svg.contains("x&lt;y"));
    assert!(svg.contains("&lt;/text&gt;&lt;script&gt;"));
    assert!(!svg.contains("<&>") && !svg.contains("<script>"));
    assert!(svg.contains(">?ctrl</text>"));
    decode_png(&chart.to_png(2)).unwrap();
}

#[test]
fn example_files() {
    let Ok(dir) = std::env::var("NEPHROD_CHART_EXAMPLE_DIR") else {
        return;
    };
    let dir = std::path::Path::new(&dir);
    let roc = roc_like();
    std::fs::write(dir.join("chart_example.png"), roc.to_png(2)).unwrap();
    std::fs::write(dir.join("chart_example_1x.png"), roc.to_png(1)).unwrap();
    std::fs::write(dir.join("chart_example.svg"), roc.to_svg()).unwrap();
    // A precision–recall chart with a prevalence line.
    let pr = Chart {
        title: "Precision–recall, test set".into(),
        x_label: "Recall".into(),
        y_label: "Precision".into(),
        series: (0..3)
            .map(|i| Series {
                label: format!("class {i} AP 0.{}", 8 - i),
                points: (0..=40)
                    .map(|k| {
                        let r = f64::from(k) / 40.0;
                        (r, 1.0 - 0.7 * r.powf(2.0 + f64::from(i)))
                    })
                    .collect(),
                style: LineStyle::cycle(i as usize),
            })
            .collect(),
        diagonal: false,
        hline: Some((0.3, "prevalence 0.30".into())),
    };
    std::fs::write(dir.join("chart_example_pr.png"), pr.to_png(1)).unwrap();
}
