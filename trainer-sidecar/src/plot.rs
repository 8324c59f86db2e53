//! Charts in reports, drawn with `plotters` (SVG, no font files: text is left to the viewer).

use std::path::Path;

use plotters::prelude::*;

use crate::finetune::Point;

/// Why a chart could not be drawn.
#[derive(Debug, thiserror::Error)]
#[error("plot {file}: {msg}")]
pub struct PlotError {
    file: String,
    msg: String,
}

/// A named line.
pub type Series<'a> = (&'a str, Vec<(f64, f64)>);

/// Two panels: the loss over steps (left) and ε spent over steps (right).
pub fn training(path: &Path, title: &str, history: &[Point]) -> Result<(), PlotError> {
    let losses: Vec<(f64, f64)> = history
        .iter()
        .filter_map(|p| p.loss.map(|l| (p.step as f64, l)))
        .collect();
    let eps: Vec<(f64, f64)> = history.iter().map(|p| (p.step as f64, p.epsilon)).collect();
    write(
        path,
        title,
        ("loss", &[("mean example loss", losses)]),
        ("privacy", &[("ε spent", eps)]),
    )
}

/// Write [`two_panels`] to `path`.
pub fn write(
    path: &Path,
    title: &str,
    left: (&str, &[Series<'_>]),
    right: (&str, &[Series<'_>]),
) -> Result<(), PlotError> {
    let fail = |msg: String| PlotError {
        file: path.display().to_string(),
        msg,
    };
    let svg = two_panels(title, left, right).map_err(fail)?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| fail(e.to_string()))?;
    }
    std::fs::write(path, svg).map_err(|e| fail(e.to_string()))
}

/// An SVG with two line charts side by side, each with its caption and a legend.
pub fn two_panels(
    title: &str,
    left: (&str, &[Series<'_>]),
    right: (&str, &[Series<'_>]),
) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, 340)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let root = root
            .titled(title, ("sans-serif", 18))
            .map_err(|e| e.to_string())?;
        let (a, b) = root.split_horizontally(450);
        panel(&a, left.0, left.1)?;
        panel(&b, right.0, right.1)?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

const COLORS: [RGBColor; 4] = [BLUE, RED, GREEN, MAGENTA];

fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    caption: &str,
    series: &[Series<'_>],
) -> Result<(), String> {
    let all = || series.iter().flat_map(|(_, p)| p.iter().copied());
    let x_max = all().map(|p| p.0).fold(1.0, f64::max);
    let (y_min, y_max) = all()
        .map(|p| p.1)
        .filter(|y| y.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), y| {
            (lo.min(y), hi.max(y))
        });
    let (y_min, y_max) = if y_min.is_finite() && y_max > y_min {
        let pad = (y_max - y_min) * 0.05;
        (y_min - pad, y_max + pad)
    } else if y_min.is_finite() {
        (y_min - 1.0, y_min + 1.0)
    } else {
        (0.0, 1.0)
    };
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 14))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..x_max, y_min..y_max)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("step")
        .draw()
        .map_err(|e| e.to_string())?;
    for (i, (label, points)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(
                points.iter().copied().filter(|p| p.1.is_finite()),
                color.stroke_width(2),
            ))
            .map_err(|e| e.to_string())?
            .label(*label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_both_panels() {
        let l: Vec<(f64, f64)> = (1..=20).map(|i| (i as f64, 3.0 / i as f64)).collect();
        let e: Vec<(f64, f64)> = (1..=20).map(|i| (i as f64, 0.1 * i as f64)).collect();
        let svg = two_panels(
            "job",
            ("loss", &[("train", l)]),
            ("privacy", &[("ε spent", e)]),
        )
        .unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..40]);
        assert!(svg.matches("<polyline").count() >= 2, "one line per panel");
        assert!(svg.contains("ε spent"), "the legend names the series");
        // an empty or constant series still draws
        assert!(
            two_panels(
                "x",
                ("a", &[("a", vec![])]),
                ("b", &[("b", vec![(1.0, 2.0)])])
            )
            .is_ok()
        );
    }
}
