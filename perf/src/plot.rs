//! Latency plots: the HDR distributions of a bench run drawn as an SVG, percentile on a
//! logarithmic axis (50, 90, 99, 99.9, 99.99, 99.999) against latency, as HdrHistogram's own
//! plotter does. Plain SVG text, so it needs no drawing library.

use std::fmt::Write;

use hdrhistogram::Histogram;

use crate::bench::BenchResult;

/// Points (percentile, value) spaced evenly on the "nines" axis up to 99.999.
pub(crate) fn curve(h: &Histogram<u64>) -> Vec<(f64, u64)> {
    if h.is_empty() {
        return Vec::new();
    }
    (0..=100)
        .map(|i| {
            let nines = i as f64 / 20.0; // 0 .. 5 nines
            let q = 1.0 - 10f64.powf(-nines);
            (q * 100.0, h.value_at_quantile(q.min(0.99999)))
        })
        .collect()
}

/// An SVG with the publish and end-to-end latency curves of a run.
pub fn svg(r: &BenchResult) -> String {
    let (w, h, left, bottom, top, right) = (900.0, 520.0, 80.0, 60.0, 50.0, 30.0);
    let series = [
        ("publish", "#1f77b4", &r.publish_latency_us.curve),
        ("end-to-end", "#d62728", &r.end_to_end_latency_us.curve),
    ];
    let y_max =
        series.iter().flat_map(|(_, _, c)| c.iter().map(|p| p.1)).max().unwrap_or(1).max(1) as f64 * 1.05;
    let x = |pct: f64| {
        let nines = -(1.0 - pct / 100.0).max(1e-5).log10();
        left + nines / 5.0 * (w - left - right)
    };
    let y = |us: f64| h - bottom - us / y_max * (h - bottom - top);
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let title = format!(
        "{}: {:.0} MB/s published, {} B messages, acks {}",
        r.workload.name, r.publish_mb_per_s, r.workload.message_bytes, r.workload.acks
    );
    let _ = writeln!(out, r#"<text x="{left}" y="25" font-size="15">{}</text>"#, escape(&title));
    for (i, label) in ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%"].iter().enumerate() {
        let px = left + i as f64 / 5.0 * (w - left - right);
        let _ =
            writeln!(out, r#"<line x1="{px}" y1="{top}" x2="{px}" y2="{}" stroke="gainsboro"/>"#, h - bottom);
        let _ =
            writeln!(out, r#"<text x="{px}" y="{}" text-anchor="middle">{label}</text>"#, h - bottom + 18.0);
    }
    for i in 0..=5 {
        let v = y_max * i as f64 / 5.0;
        let py = y(v);
        let _ = writeln!(
            out,
            r#"<line x1="{left}" y1="{py}" x2="{}" y2="{py}" stroke="whitesmoke"/>"#,
            w - right
        );
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}" text-anchor="end">{:.0} us</text>"#,
            left - 6.0,
            py + 4.0,
            v
        );
    }
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle">percentile</text>"#,
        (w + left) / 2.0,
        h - 15.0
    );
    for (k, (name, color, points)) in series.iter().enumerate() {
        let path: Vec<String> =
            points.iter().map(|(p, v)| format!("{:.1},{:.1}", x(*p), y(*v as f64))).collect();
        let _ = writeln!(
            out,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            path.join(" ")
        );
        let ly = top + 15.0 + k as f64 * 18.0;
        let _ = writeln!(
            out,
            r#"<rect x="{}" y="{}" width="14" height="4" fill="{color}"/>"#,
            left + 10.0,
            ly - 4.0
        );
        let _ = writeln!(out, r#"<text x="{}" y="{ly}">{name}</text>"#, left + 30.0);
    }
    out.push_str("</svg>\n");
    out
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}
