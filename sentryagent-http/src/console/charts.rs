//! The analytics charts as SVG drawn on the server: the token trend (a
//! line over days) and the weekday x hour heatmap. Colours come from the
//! console's stylesheet through classes (`chart-line`, `chart-axis`,
//! `heat-0` .. `heat-4`), so light and dark follow the page; no inline
//! style, so the pages' Content-Security-Policy holds.

use std::fmt::Write as _;

use sentryagent_core::DailyCount;

/// Weekday labels of the heatmap rows (Monday first, as the core counts).
const WEEKDAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

const W: u32 = 720;
const H: u32 = 240;
const LEFT: u32 = 48;
const RIGHT: u32 = 12;
const TOP: u32 = 12;
const BOTTOM: u32 = 36;

/// Escapes text for an SVG (XML) text node or attribute.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
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

/// A "nice" axis maximum at or above `max` (1, 2 or 5 times a power of
/// ten; at least 1).
fn nice_max(max: u64) -> u64 {
    let mut step = 1u64;
    loop {
        for m in [1, 2, 5] {
            let v = step.saturating_mul(m);
            if v >= max {
                return v;
            }
        }
        step = step.saturating_mul(10);
    }
}

/// The token trend: one point per day, oldest first, with a y axis from 0
/// to a round maximum and a label every seventh day.
pub(crate) fn token_trend(days: &[DailyCount]) -> String {
    let total: u64 = days.iter().map(|d| d.count).sum();
    let max = nice_max(days.iter().map(|d| d.count).max().unwrap_or(0));
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let n = days.len().max(1) as u32;
    let x = |i: usize| -> f64 {
        if n <= 1 {
            f64::from(LEFT + plot_w / 2)
        } else {
            f64::from(LEFT) + f64::from(plot_w) * i as f64 / f64::from(n - 1)
        }
    };
    let y = |v: u64| -> f64 { f64::from(TOP) + f64::from(plot_h) * (1.0 - v as f64 / max as f64) };
    let mut s = String::with_capacity(4096 + days.len() * 160);
    let first = days.first().map_or("", |d| d.day.as_str());
    let last = days.last().map_or("", |d| d.day.as_str());
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {W} {H}" role="img" aria-labelledby="token-trend-title"><title id="token-trend-title">Token issuances per day, {} to {}: {total} in all</title>"#,
        esc(first),
        esc(last)
    );
    // Grid lines and y labels at 0, max/2 and max.
    for v in [0, max / 2, max] {
        let yy = y(v);
        let _ = write!(
            s,
            r#"<line class="chart-grid" x1="{LEFT}" x2="{}" y1="{yy:.1}" y2="{yy:.1}"/><text class="chart-label" x="{}" y="{:.1}" text-anchor="end">{v}</text>"#,
            W - RIGHT,
            LEFT - 6,
            yy + 4.0
        );
    }
    let _ = write!(
        s,
        r#"<line class="chart-axis" x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{}"/>"#,
        H - BOTTOM
    );
    if !days.is_empty() {
        s.push_str(r#"<polyline class="chart-line" fill="none" points=""#);
        for (i, d) in days.iter().enumerate() {
            let _ = write!(s, "{:.1},{:.1} ", x(i), y(d.count));
        }
        s.push_str(r#""/>"#);
    }
    for (i, d) in days.iter().enumerate() {
        let _ = write!(
            s,
            r#"<circle class="chart-point" cx="{:.1}" cy="{:.1}" r="3" data-day="{}" data-count="{}"><title>{}: {}</title></circle>"#,
            x(i),
            y(d.count),
            esc(&d.day),
            d.count,
            esc(&d.day),
            d.count
        );
        // Every seventh day, and the last one unless a label is near.
        if i % 7 == 0 || (i + 1 == days.len() && i % 7 >= 4) {
            // `YYYY-MM-DD` -> `MM-DD`.
            let label = d.day.get(5..).unwrap_or(&d.day);
            let _ = write!(
                s,
                r#"<text class="chart-label" x="{:.1}" y="{}" text-anchor="middle">{}</text>"#,
                x(i),
                H - BOTTOM + 18,
                esc(label)
            );
        }
    }
    s.push_str("</svg>");
    s
}

/// The heatmap: 7 rows (Monday first) of 24 hours (UTC), each cell a
/// `rect` with `data-cell="<weekday>-<hour>"` and its count, shaded in
/// five steps relative to the busiest hour.
pub(crate) fn heatmap(cells: &[[u64; 24]; 7]) -> String {
    const CELL: u32 = 26;
    const GAP: u32 = 2;
    const LABEL_W: u32 = 40;
    const LABEL_H: u32 = 18;
    let width = LABEL_W + 24 * (CELL + GAP);
    let height = LABEL_H + 7 * (CELL + GAP);
    let max = cells.iter().flatten().copied().max().unwrap_or(0);
    let total: u64 = cells.iter().flatten().sum();
    let mut s = String::with_capacity(20_000);
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="chart heatmap" viewBox="0 0 {width} {height}" role="img" aria-labelledby="heatmap-title"><title id="heatmap-title">Token issuances by weekday and hour (UTC), last 28 days: {total} in all</title>"#
    );
    for hour in (0..24).step_by(3) {
        let _ = write!(
            s,
            r#"<text class="chart-label" x="{}" y="12" text-anchor="middle">{hour:02}</text>"#,
            LABEL_W + hour * (CELL + GAP) + CELL / 2
        );
    }
    for (d, row) in cells.iter().enumerate() {
        let yy = LABEL_H + d as u32 * (CELL + GAP);
        let _ = write!(
            s,
            r#"<text class="chart-label" x="0" y="{}">{}</text>"#,
            yy + CELL / 2 + 4,
            WEEKDAYS[d]
        );
        for (h, &count) in row.iter().enumerate() {
            let level = if count == 0 || max == 0 {
                0
            } else {
                // 1..=4 by quarter of the busiest hour.
                1 + (count.saturating_mul(4).saturating_sub(1) / max).min(3)
            };
            let _ = write!(
                s,
                r#"<rect class="heat-{level}" x="{}" y="{yy}" width="{CELL}" height="{CELL}" rx="3" data-cell="{d}-{h}" data-count="{count}"><title>{} {h:02}:00 UTC: {count}</title></rect>"#,
                LABEL_W + h as u32 * (CELL + GAP),
                WEEKDAYS[d]
            );
        }
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(d: &str, count: u64) -> DailyCount {
        DailyCount {
            day: d.into(),
            count,
        }
    }

    #[test]
    fn the_heatmap_has_a_cell_per_weekday_and_hour_with_its_count() {
        let mut cells = [[0u64; 24]; 7];
        cells[2][13] = 8;
        cells[6][0] = 2;
        let svg = heatmap(&cells);
        assert_eq!(svg.matches("data-cell=").count(), 168);
        assert!(svg.contains(r#"class="heat-4" x="404" y="74" width="26" height="26" rx="3" data-cell="2-13" data-count="8""#), "{svg}");
        assert!(svg.contains(r#"data-cell="6-0" data-count="2""#));
        assert!(svg.contains(r#"class="heat-1""#));
        assert!(svg.contains("10 in all"));
        assert!(!svg.contains("style="));
    }

    #[test]
    fn an_empty_heatmap_is_all_zero_cells() {
        let svg = heatmap(&[[0; 24]; 7]);
        assert_eq!(svg.matches(r#"class="heat-0""#).count(), 168);
    }

    #[test]
    fn the_trend_has_a_point_per_day_scaled_to_a_round_maximum() {
        let days: Vec<DailyCount> = (1..=30)
            .map(|i| day(&format!("2026-11-{i:02}"), if i == 30 { 37 } else { i % 3 }))
            .collect();
        let svg = token_trend(&days);
        assert_eq!(svg.matches("<circle").count(), 30);
        assert!(svg.contains(r#"data-day="2026-11-30" data-count="37""#));
        // The axis goes to 50, the round number above 37.
        assert!(svg.contains(">50</text>"));
        assert!(svg.contains("2026-11-01 to 2026-11-30"));
        assert_eq!(nice_max(0), 1);
        assert_eq!(nice_max(1), 1);
        assert_eq!(nice_max(3), 5);
        assert_eq!(nice_max(101), 200);
    }

    #[test]
    fn chart_text_is_escaped() {
        let svg = token_trend(&[day("<script>", 1)]);
        assert!(!svg.contains("<script>"));
        assert!(svg.contains("&lt;script&gt;"));
    }
}
