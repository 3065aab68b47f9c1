//! `--plot out.svg`: a run drawn for a person. The upper chart is the
//! throughput over time (MiB/s, over 0.5 s windows of the report's
//! timeline); the lower one is the distribution of time to TRANSFERRED per
//! job (the fraction of jobs TRANSFERRED by each time, a step per job), one
//! line per priority.

use std::path::Path;

use plotters::prelude::*;

use crate::harness::Report;

/// Throughput over windows of this many seconds.
const WINDOW: f64 = 0.5;

/// `(seconds, MiB/s)` from cumulative `[seconds, bytes]` samples: the mean
/// rate over each window (a sample that steps back, after a SIGKILL,
/// counts as zero).
pub fn throughput(timeline: &[[f64; 2]]) -> Vec<(f64, f64)> {
    let mut out = Vec::new();
    let Some(&[mut t0, mut b0]) = timeline.first() else {
        return out;
    };
    out.push((0.0, 0.0));
    for &[t, b] in timeline {
        if t - t0 >= WINDOW {
            let rate = (b - b0).max(0.0) / (t - t0) / (1024.0 * 1024.0);
            out.push((t, rate));
            (t0, b0) = (t, b);
        }
    }
    out
}

/// `(ms, fraction of jobs done by then)` of each priority's samples.
pub fn distribution(samples: &[(String, f64)]) -> Vec<(String, Vec<(f64, f64)>)> {
    let mut names: Vec<&str> = samples.iter().map(|(n, _)| n.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    let mut by_name = Vec::new();
    for name in names {
        let mut ms: Vec<f64> = samples
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, ms)| *ms)
            .collect();
        ms.sort_by(f64::total_cmp);
        // The empirical distribution: a step up at each job's time.
        let n = ms.len() as f64;
        let mut points = vec![(0.0, 0.0)];
        for (i, ms) in ms.iter().enumerate() {
            points.push((*ms, i as f64 / n));
            points.push((*ms, (i + 1) as f64 / n));
        }
        by_name.push((name.to_owned(), points));
    }
    by_name
}

fn color(name: &str) -> RGBColor {
    match name {
        "foreground" => RGBColor(0xd6, 0x27, 0x28),
        "high" => RGBColor(0xff, 0x7f, 0x0e),
        "normal" => RGBColor(0x1f, 0x77, 0xb4),
        "low" => RGBColor(0x2c, 0xa0, 0x2c),
        _ => RGBColor(0x44, 0x44, 0x44),
    }
}

/// Draws `report` into an SVG file at `path`.
pub fn draw(report: &Report, path: &Path) -> Result<(), String> {
    let fail = |err: &dyn std::fmt::Display| format!("{}: {err}", path.display());
    let root = SVGBackend::new(path, (960, 760)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let (upper, lower) = root.split_vertically(380);

    let rates = throughput(&report.timeline);
    let t_max = rates
        .last()
        .map_or(1.0, |(t, _)| *t)
        .max(report.wall_seconds)
        .max(0.1);
    let r_max = rates.iter().map(|(_, r)| *r).fold(0.0, f64::max).max(1.0) * 1.1;
    let mut chart = ChartBuilder::on(&upper)
        .caption(
            format!(
                "{}: {} files, {:.1} MiB in {:.2} s ({:.1} MiB/s)",
                report.mode,
                report.files,
                report.bytes as f64 / (1024.0 * 1024.0),
                report.wall_seconds,
                report.bytes_per_second / (1024.0 * 1024.0)
            ),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..t_max, 0.0..r_max)
        .map_err(|e| fail(&e))?;
    chart
        .configure_mesh()
        .x_desc("seconds since the first Resume")
        .y_desc("MiB/s received")
        .draw()
        .map_err(|e| fail(&e))?;
    chart
        .draw_series(LineSeries::new(rates, &color("normal")))
        .map_err(|e| fail(&e))?;

    let lines = distribution(&report.samples);
    let ms_max = lines
        .iter()
        .flat_map(|(_, points)| points.iter().map(|(ms, _)| *ms))
        .fold(0.0, f64::max)
        .max(1.0)
        * 1.05;
    let mut chart = ChartBuilder::on(&lower)
        .caption("time to TRANSFERRED per job", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..ms_max, 0.0..1.0)
        .map_err(|e| fail(&e))?;
    chart
        .configure_mesh()
        .x_desc("ms since the job's Resume")
        .y_desc("fraction of jobs TRANSFERRED")
        .draw()
        .map_err(|e| fail(&e))?;
    for (name, points) in lines {
        let c = color(&name);
        chart
            .draw_series(LineSeries::new(points, &c))
            .map_err(|e| fail(&e))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(|e| fail(&e))?;
    root.present().map_err(|e| fail(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn throughput_is_the_rate_over_each_window() {
        let mib = 1024.0 * 1024.0;
        let timeline = [
            [0.0, 0.0],
            [0.25, mib],
            [0.5, 2.0 * mib],
            [1.0, 2.0 * mib],
            [1.5, mib],
        ];
        let rates = throughput(&timeline);
        assert_eq!(rates, vec![(0.0, 0.0), (0.5, 4.0), (1.0, 0.0), (1.5, 0.0)]);
    }

    #[test]
    fn the_distribution_is_cumulative_per_priority() {
        let samples = vec![
            ("normal".to_owned(), 30.0),
            ("high".to_owned(), 5.0),
            ("normal".to_owned(), 10.0),
        ];
        let lines = distribution(&samples);
        assert_eq!(
            lines[0],
            ("high".to_owned(), vec![(0.0, 0.0), (5.0, 0.0), (5.0, 1.0)])
        );
        assert_eq!(
            lines[1],
            (
                "normal".to_owned(),
                vec![
                    (0.0, 0.0),
                    (10.0, 0.0),
                    (10.0, 0.5),
                    (30.0, 0.5),
                    (30.0, 1.0)
                ]
            )
        );
    }

    #[test]
    fn a_run_is_drawn_as_svg() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.svg");
        let report = Report {
            mode: "embedded".into(),
            files: 2,
            bytes: 3 << 20,
            wall_seconds: 1.0,
            timeline: vec![[0.0, 0.0], [0.5, 1048576.0], [1.0, 3145728.0]],
            samples: vec![("normal".into(), 800.0), ("high".into(), 400.0)],
            ..Report::default()
        };
        draw(&report, &path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..100.min(svg.len())]);
        assert!(svg.contains("time to TRANSFERRED per job"));
        assert!(svg.contains("<polyline"), "no lines drawn");
    }
}
