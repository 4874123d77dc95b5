//! Gymnasium 1.4.0 classic control, ported line by line in pure Rust.
//!
//! Each port keeps Gymnasium's order of operations and NumPy 2's type promotion (NEP 50: a
//! NumPy `float32` scalar combined with a Python float computes in `float32`), so that every
//! observation matches Gymnasium bit for bit. The fixture tests in `tests/classic_fixtures.rs`
//! replay recorded Gymnasium episodes to prove it.

// The ports keep Gymnasium's comparisons and clipping verbatim, so that a reader can check them
// line by line against the Python source.
#![allow(clippy::manual_range_contains, clippy::manual_clamp)]

mod acrobot;
mod cartpole;
mod mountain_car;
mod mountain_car_continuous;
mod pendulum;

pub use acrobot::Acrobot;
pub use cartpole::CartPole;
pub use mountain_car::MountainCar;
pub use mountain_car_continuous::MountainCarContinuous;
pub use pendulum::Pendulum;
