//! `report.html`: the radiologist's view of a `report.json`, one self-contained file (images
//! inlined as `data:` URIs, inline CSS and SVG, no script, no network reference), so it opens the
//! same on a reading workstation, from a USB stick or attached to a PACS.
//!
//! Sections: the models' status (first, impossible to miss for demo models), findings (kidneys,
//! lesions), one section per lesion (key images through it in every phase with the
//! segmentation outlines, Grad-CAM overlays, size and location, the enhancement curve, the
//! subtype probabilities), the phases found and how they were identified, the registration,
//! the models, timings and warnings. Every text that came from a file is HTML-escaped.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::schema::{LesionEntry, Report};

/// Phases in time order (the x axis of enhancement curves).
const PHASE_ORDER: [&str; 4] = ["non_contrast", "arterial", "portal", "delayed"];

/// HTML-escapes `s` for text and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// Standard base64 (RFC 4648, with padding).
pub fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(ABC[((n >> (18 - 6 * k)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn phase_label(p: &str) -> &str {
    match p {
        "non_contrast" => "non-contrast",
        "arterial" => "arterial",
        "portal" => "portal venous",
        "delayed" => "delayed",
        other => other,
    }
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("–".into(), |x| format!("{x:.digits$}"))
}

const STYLE: &str = "body{font-family:sans-serif;margin:1.5em;color:#111;max-width:1100px}\
h1{font-size:1.5em}h2{border-bottom:1px solid #999;margin-top:1.6em}\
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #bbb;padding:3px 8px;\
text-align:left;font-size:.92em}.status{border:3px solid #c00;background:#fee;padding:.6em;\
font-weight:bold}.site{border:2px solid #666;background:#f4f4f4;padding:.6em}\
.imgs{display:flex;flex-wrap:wrap;gap:8px}figure{margin:0}figcaption{font-size:.85em;\
text-align:center}.bar{background:#36c;height:12px;display:inline-block}\
.warn{color:#a40}";

/// Renders the report (see the module doc); `images` are the PNG files the report names.
pub fn render_html(report: &Report, images: &[(String, Vec<u8>)]) -> String {
    let images: BTreeMap<&str, &[u8]> = images
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_slice()))
        .collect();
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; \
         img-src data:; style-src 'unsafe-inline'\">\
         <title>nephrod report {}</title><style>{STYLE}</style></head><body>",
        escape(&report.study_uid_hash)
    );
    let demo = report.models.iter().any(|m| m.name.ends_with("-demo"));
    let _ = write!(
        h,
        "<h1>Renal CT analysis</h1><p class=\"{}\">{}</p>",
        if demo { "status" } else { "site" },
        escape(&report.model_status)
    );
    let _ =
        write!(
        h,
        "<table><tr><th>Study UID</th><td>{}</td></tr><tr><th>Reference phase</th><td>{}</td></tr>\
         <tr><th>Report written</th><td>{} (nephrod {})</td></tr></table>",
        escape(&report.study_uid),
        escape(report.reference_phase.as_deref().map_or("none", phase_label)),
        escape(&report.created_utc),
        escape(&report.nephrod_version)
    );

    h.push_str("<h2>Findings</h2>");
    if report.kidneys.is_empty() {
        h.push_str("<p>No kidney was segmented.</p>");
    } else {
        h.push_str("<table><tr><th>Kidney</th><th>Volume (mL)</th><th>With masses (mL)</th></tr>");
        for k in &report.kidneys {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{:.1}</td><td>{:.1}</td></tr>",
                escape(&k.side),
                k.volume_ml,
                k.volume_with_masses_ml
            );
        }
        h.push_str("</table>");
    }
    if report.lesions.is_empty() {
        h.push_str("<p>No renal mass was segmented.</p>");
    } else {
        h.push_str(
            "<table><tr><th>Lesion</th><th>Kind</th><th>Location</th><th>Max axial diameter (mm)</th>\
             <th>Volume (mL)</th><th>Most probable subtype</th><th>Malignant probability</th></tr>",
        );
        for l in &report.lesions {
            let (top, malignant) = match &l.subtype {
                Some(s) => (
                    format!(
                        "{} ({:.0} %)",
                        escape(&s.top),
                        100.0 * s.probabilities.get(&s.top).copied().unwrap_or(0.0)
                    ),
                    format!("{:.0} %", 100.0 * s.malignant_probability),
                ),
                None => (
                    format!(
                        "not classified: {}",
                        escape(l.not_classified_reason.as_deref().unwrap_or("?"))
                    ),
                    "–".into(),
                ),
            };
            let _ = write!(
                h,
                "<tr><td><a href=\"#lesion-{id}\">{id}</a></td><td>{}</td><td>{}</td><td>{:.1}</td>\
                 <td>{:.2}</td><td>{top}</td><td>{malignant}</td></tr>",
                escape(&l.kind),
                escape(&location(l)),
                l.max_axial_diameter_mm,
                l.volume_ml,
                id = l.id
            );
        }
        h.push_str("</table>");
    }

    for l in &report.lesions {
        lesion_section(&mut h, l, &images);
    }

    h.push_str(
        "<h2>Phases</h2><table><tr><th>Series</th><th>Description</th><th>Phase</th>\
                <th>Confidence</th><th>How identified</th><th>Used</th></tr>",
    );
    for p in &report.phases {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.2}</td><td>{}</td><td>{}</td></tr>",
            p.series_number.map_or("–".into(), |n| n.to_string()),
            escape(p.description.as_deref().unwrap_or("–")),
            escape(phase_label(&p.phase)),
            p.phase_confidence,
            escape(&p.phase_evidence.join("; ")),
            if p.used {
                "yes".to_string()
            } else {
                format!("no: {}", escape(p.not_used_reason.as_deref().unwrap_or("")))
            }
        );
    }
    h.push_str("</table>");

    h.push_str("<h2>Registration</h2>");
    if report.registration.is_empty() {
        h.push_str("<p>No phase was aligned to the reference.</p>");
    } else {
        h.push_str(
            "<table><tr><th>Phase</th><th>Kidney Dice</th><th>Tumour Dice</th>\
             <th>Kidney Dice (centre of mass only)</th><th>Tumour Dice (centre of mass only)</th>\
             <th>Converged</th></tr>",
        );
        for r in &report.registration {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(phase_label(&r.moving_phase)),
                opt(r.dice_kidney, 3),
                opt(r.dice_tumor, 3),
                opt(r.dice_com_kidney, 3),
                opt(r.dice_com_tumor, 3),
                if r.converged { "yes" } else { "no" }
            );
        }
        h.push_str("</table>");
    }

    h.push_str("<h2>Models</h2><table><tr><th>Role</th><th>Name</th><th>Version</th><th>SHA-256 (manifest)</th></tr>");
    for m in &report.models {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            escape(&m.role),
            escape(&m.name),
            escape(&m.version),
            escape(&m.sha256)
        );
    }
    let _ = write!(
        h,
        "</table><p>Segmentation: test-time mirroring {}, nnU-Net post-processing {}, KiTS \
         post-processing {}.</p>",
        on_off(report.segmentation.tta),
        on_off(report.segmentation.nnunet_postprocessing),
        on_off(report.segmentation.kits_postprocessing)
    );
    h.push_str("<h2>Processing</h2><table>");
    for (stage, s) in &report.timings_s {
        let _ = write!(h, "<tr><td>{}</td><td>{s:.1} s</td></tr>", escape(stage));
    }
    h.push_str("</table>");
    if !report.warnings.is_empty() {
        h.push_str("<h2>Warnings</h2><ul>");
        for w in &report.warnings {
            let _ = write!(h, "<li class=\"warn\">{}</li>", escape(w));
        }
        h.push_str("</ul>");
    }
    h.push_str("</body></html>\n");
    h
}

fn on_off(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}

fn location(l: &LesionEntry) -> String {
    match &l.pole {
        Some(p) => format!(
            "{} kidney, {} pole",
            l.side,
            if p == "mid" { "interpolar" } else { p }
        ),
        None => format!("{} side, not touching a kidney", l.side),
    }
}

fn lesion_section(h: &mut String, l: &LesionEntry, images: &BTreeMap<&str, &[u8]>) {
    let _ = write!(
        h,
        "<h2 id=\"lesion-{}\">Lesion {} — {}</h2><p>{}; maximum axial diameter {:.1} mm; volume \
         {:.2} mL; centre (LPS, mm) {:.1}, {:.1}, {:.1}.</p>",
        l.id,
        l.id,
        escape(&l.kind),
        escape(&location(l)),
        l.max_axial_diameter_mm,
        l.volume_ml,
        l.center_lps_mm[0],
        l.center_lps_mm[1],
        l.center_lps_mm[2]
    );
    for kind in ["key_image", "grad_cam"] {
        let figs: Vec<_> = l.images.iter().filter(|i| i.kind == kind).collect();
        if figs.is_empty() {
            continue;
        }
        let _ = write!(
            h,
            "<p>{}</p><div class=\"imgs\">",
            if kind == "key_image" {
                "Axial slice through the lesion in each phase (patient's right on the image's \
                 left; outlines: kidney green, tumour red, cyst yellow)."
            } else {
                "Grad-CAM: where the classifier looked for its most probable subtype."
            }
        );
        for f in figs {
            if let Some(png) = images.get(f.file.as_str()) {
                let _ = write!(
                    h,
                    "<figure><img width=\"256\" alt=\"{}\" src=\"data:image/png;base64,{}\">\
                     <figcaption>{}</figcaption></figure>",
                    escape(&f.file),
                    base64(png),
                    escape(phase_label(&f.phase))
                );
            }
        }
        h.push_str("</div>");
    }
    if !l.mean_hu.is_empty() {
        h.push_str("<p>Attenuation by phase (mean HU over the lesion):</p>");
        h.push_str(&enhancement_svg(&l.mean_hu));
        h.push_str("<table><tr><th>Phase</th><th>Mean HU</th><th>Enhancement (HU)</th></tr>");
        for p in PHASE_ORDER {
            if let Some(v) = l.mean_hu.get(p) {
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td>{v:.0}</td><td>{}</td></tr>",
                    phase_label(p),
                    opt(l.enhancement_hu.get(p).copied(), 0)
                );
            }
        }
        h.push_str("</table>");
    }
    match &l.subtype {
        Some(s) => {
            h.push_str("<p>Subtype probabilities:</p><table>");
            for c in ["ccRCC", "pRCC", "chRCC", "oncocytoma", "AML"] {
                let p = s.probabilities.get(c).copied().unwrap_or(0.0);
                let _ = write!(
                    h,
                    "<tr><td>{c}</td><td><span class=\"bar\" style=\"width:{:.0}px\"></span> \
                     {:.1} %</td></tr>",
                    (p * 300.0).clamp(0.0, 300.0),
                    100.0 * p
                );
            }
            let _ = write!(
                h,
                "</table><p>Malignant (ccRCC + pRCC + chRCC): {:.1} %.</p>",
                100.0 * s.malignant_probability
            );
        }
        None => {
            let _ = write!(
                h,
                "<p>Not classified: {}.</p>",
                escape(l.not_classified_reason.as_deref().unwrap_or("?"))
            );
        }
    }
}

/// A small line chart of mean HU over the phases present, in time order (inline SVG).
fn enhancement_svg(mean_hu: &BTreeMap<String, f64>) -> String {
    let pts: Vec<(usize, &str, f64)> = PHASE_ORDER
        .iter()
        .enumerate()
        .filter_map(|(i, p)| mean_hu.get(*p).map(|v| (i, *p, *v)))
        .collect();
    let (w, ht, pad) = (360.0, 180.0, 40.0);
    let lo = pts.iter().map(|p| p.2).fold(0.0f64, f64::min).floor();
    let hi = pts.iter().map(|p| p.2).fold(100.0f64, f64::max).ceil();
    let x = |i: usize| pad + i as f64 * (w - 2.0 * pad) / 3.0;
    let y = |v: f64| ht - pad + (lo - v) / (hi - lo).max(1.0) * (ht - 2.0 * pad);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{ht}\" \
         role=\"img\" aria-label=\"mean HU by phase\"><rect width=\"{w}\" height=\"{ht}\" fill=\"#fff\"/>\
         <line x1=\"{pad}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"#888\"/>\
         <line x1=\"{pad}\" y1=\"{pad}\" x2=\"{pad}\" y2=\"{b}\" stroke=\"#888\"/>\
         <text x=\"4\" y=\"{t}\" font-size=\"10\">{hi:.0} HU</text>\
         <text x=\"4\" y=\"{b}\" font-size=\"10\">{lo:.0} HU</text>",
        b = ht - pad,
        r = w - pad,
        t = pad + 4.0,
    );
    for (i, p) in PHASE_ORDER.iter().enumerate() {
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"middle\">{}</text>",
            x(i),
            ht - pad + 14.0,
            phase_label(p)
        );
    }
    let path: Vec<String> = pts
        .iter()
        .map(|(i, _, v)| format!("{:.1},{:.1}", x(*i), y(*v)))
        .collect();
    let _ = write!(
        s,
        "<polyline fill=\"none\" stroke=\"#c22\" stroke-width=\"2\" points=\"{}\"/>",
        path.join(" ")
    );
    for (i, _, v) in &pts {
        let _ = write!(
            s,
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"#c22\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"middle\">{v:.0}</text>",
            x(*i),
            y(*v),
            x(*i),
            y(*v) - 6.0
        );
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (plain, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), enc);
        }
    }

    #[test]
    fn escape_neutralises_markup() {
        assert_eq!(
            escape("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
        assert_eq!(escape("a\u{0}b"), "a\u{fffd}b");
    }
}
