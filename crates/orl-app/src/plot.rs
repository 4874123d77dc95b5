//! The dataset figure (`orl inspect --plot`, `Dataset.plot` in Python): return histogram on
//! top, one action histogram per dimension (or the per-action counts) below. PNG or SVG, chosen
//! by the file extension, written atomically.

use std::path::Path;

use orl_data::Report;
use orl_data::report::{ActionCoverage, Histogram};
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::AppError;

/// The bundled DejaVu Sans (`assets/`, its licence beside it), registered as `sans-serif`.
pub static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

fn register_font(path: &Path) -> Result<(), AppError> {
    static ONCE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let ok = *ONCE.get_or_init(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, FONT).is_ok()
    });
    if !ok {
        return Err(AppError::plot(
            path,
            "the bundled DejaVuSans font could not be loaded",
        ));
    }
    Ok(())
}

type PResult<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn hist_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    h: &Histogram,
) -> PResult<()>
where
    DB::ErrorType: 'static,
{
    let w = (h.hi - h.lo) / h.counts.len() as f64;
    let (lo, hi) = if w > 0.0 {
        (h.lo, h.hi)
    } else {
        (h.lo - 0.5, h.lo + 0.5)
    };
    let ymax = h.counts.iter().copied().max().unwrap_or(1).max(1) as f64 * 1.05;
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 16))
        .margin(8)
        .x_label_area_size(28)
        .y_label_area_size(48)
        .build_cartesian_2d(lo..hi, 0f64..ymax)?;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_labels(5)
        .y_labels(4)
        .label_style(("sans-serif", 11))
        .draw()?;
    let bw = if w > 0.0 { w } else { hi - lo };
    chart.draw_series(h.counts.iter().enumerate().map(|(k, &c)| {
        let x0 = lo + bw * k as f64;
        Rectangle::new([(x0, 0.0), (x0 + bw, c as f64)], BLUE.mix(0.6).filled())
    }))?;
    Ok(())
}

fn counts_panel<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, counts: &[u64]) -> PResult<()>
where
    DB::ErrorType: 'static,
{
    let ymax = counts.iter().copied().max().unwrap_or(1).max(1) as f64 * 1.05;
    let mut chart = ChartBuilder::on(area)
        .caption("action counts", ("sans-serif", 16))
        .margin(8)
        .x_label_area_size(28)
        .y_label_area_size(48)
        .build_cartesian_2d(-0.5f64..counts.len() as f64 - 0.5, 0f64..ymax)?;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_labels(counts.len().min(20))
        .y_labels(4)
        .label_style(("sans-serif", 11))
        .draw()?;
    chart.draw_series(counts.iter().enumerate().map(|(a, &c)| {
        Rectangle::new(
            [(a as f64 - 0.4, 0.0), (a as f64 + 0.4, c as f64)],
            GREEN.mix(0.7).filled(),
        )
    }))?;
    Ok(())
}

fn render<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, r: &Report) -> PResult<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let (top, bottom) = root.split_vertically(320);
    hist_panel(
        &top,
        &format!("episode returns ({} episodes)", r.episodes),
        &r.return_histogram,
    )?;
    match &r.actions {
        ActionCoverage::Continuous { histograms, .. } => {
            let cols = histograms.len().clamp(1, 3);
            let rows = histograms.len().div_ceil(cols).max(1);
            for (k, (area, h)) in bottom
                .split_evenly((rows, cols))
                .iter()
                .zip(histograms)
                .enumerate()
            {
                hist_panel(area, &format!("action[{k}]"), h)?;
            }
        }
        ActionCoverage::Discrete { counts } => counts_panel(&bottom, counts)?,
    }
    root.present()?;
    Ok(())
}

/// Draws the report to `path` (.png or .svg).
pub fn draw(r: &Report, path: &Path) -> Result<(), AppError> {
    register_font(path)?;
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let rows = match &r.actions {
        ActionCoverage::Continuous { histograms, .. } => histograms.len().div_ceil(3).max(1),
        ActionCoverage::Discrete { .. } => 1,
    };
    let size = (960u32, 320 + 240 * rows as u32);
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("plot");
    let tmp = dir.join(format!(".{name}.{}.tmp.{ext}", std::process::id()));
    let drawn = match ext.as_str() {
        "png" => render(BitMapBackend::new(&tmp, size).into_drawing_area(), r),
        "svg" => render(SVGBackend::new(&tmp, size).into_drawing_area(), r),
        _ => {
            return Err(AppError::plot(
                path,
                format!("the format must be .png or .svg, not `.{ext}`"),
            ));
        }
    };
    if let Err(e) = drawn {
        let _ = std::fs::remove_file(&tmp);
        return Err(AppError::plot(path, format!("drawing failed: {e}")));
    }
    std::fs::rename(&tmp, path).map_err(|source| AppError::Io {
        path: path.to_path_buf(),
        source,
    })
}
