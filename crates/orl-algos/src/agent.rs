//! Building algorithms by name, and [`Agent`]: an algorithm plus the observation normalisation
//! it was trained with, acting on raw observations.
