//! The error curve of a bisection as an SVG: every measured tensor's max abs error against its
//! position in the graph, on a log scale, tensors beyond tolerance in red, the first divergent
//! node marked.

use std::fmt::Write;

use super::bisect::BisectReport;

const WIDTH: f64 = 900.0;
const HEIGHT: f64 = 420.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;

/// The SVG document.
pub fn svg(r: &BisectReport) -> String {
    let points: Vec<(usize, f64, bool)> = r
        .measured
        .iter()
        .filter(|m| m.max_abs.is_finite())
        .map(|m| (m.index, m.max_abs.max(1e-12), m.diverges))
        .collect();
    let lo = points
        .iter()
        .map(|p| p.1.log10().floor())
        .fold(f64::INFINITY, f64::min)
        .min(-8.0);
    let hi = points
        .iter()
        .map(|p| p.1.log10().ceil())
        .fold(f64::NEG_INFINITY, f64::max)
        .max(0.0);
    let n = r.nodes.max(1) as f64;
    let x = |i: usize| LEFT + (i as f64 / n) * (WIDTH - LEFT - RIGHT);
    let y = |v: f64| TOP + (hi - v.log10()) / (hi - lo) * (HEIGHT - TOP - BOTTOM);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        s,
        r#"<rect width="100%" height="100%" fill="white"/><text x="{LEFT}" y="22" font-size="14">{} vs {} (reference): max abs error by node</text>"#,
        escape(&r.runtime),
        escape(&r.reference)
    );
    let mut e = lo;
    while e <= hi {
        let yy = y(10f64.powf(e));
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" x2="{}" y1="{yy:.1}" y2="{yy:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">1e{e}</text>"##,
            WIDTH - RIGHT,
            LEFT - 6.0,
            yy + 4.0
        );
        e += 1.0;
    }
    let ty = y(r.tolerance.atol.max(1e-12));
    let _ = writeln!(
        s,
        r##"<line x1="{LEFT}" x2="{}" y1="{ty:.1}" y2="{ty:.1}" stroke="#888" stroke-dasharray="4 3"/><text x="{}" y="{:.1}" text-anchor="end" fill="#666">atol</text>"##,
        WIDTH - RIGHT,
        WIDTH - RIGHT,
        ty - 4.0
    );
    let path: Vec<String> = points
        .iter()
        .map(|&(i, v, _)| format!("{:.1},{:.1}", x(i), y(v)))
        .collect();
    let _ = writeln!(
        s,
        r##"<polyline fill="none" stroke="#4a7" points="{}"/>"##,
        path.join(" ")
    );
    for &(i, v, bad) in &points {
        let colour = if bad { "#d33" } else { "#2a6" };
        let _ = writeln!(
            s,
            r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{colour}"/>"#,
            x(i),
            y(v)
        );
    }
    if let Some(c) = &r.first_divergent_node {
        let cx = x(c.index);
        let _ = writeln!(
            s,
            r##"<line x1="{cx:.1}" x2="{cx:.1}" y1="{TOP}" y2="{}" stroke="#d33" stroke-dasharray="2 2"/><text x="{:.1}" y="{}" fill="#d33">{} ({})</text>"##,
            HEIGHT - BOTTOM,
            cx + 4.0,
            TOP + 12.0,
            escape(&c.name),
            escape(&c.op_type)
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">node (topological order, {} nodes)</text></svg>"#,
        (LEFT + WIDTH - RIGHT) / 2.0,
        HEIGHT - 14.0,
        r.nodes
    );
    s
}

fn escape(t: &str) -> String {
    t.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
