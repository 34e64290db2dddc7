//! ENAS, NAS-RL and MetaQNN on candle. Data flows one way: `data` -> `model`
//! <- `space`; `controller` -> `space`; `train` drives them all.
pub mod cli;
pub mod controller;
pub mod data;
pub mod model;
pub mod ops;
pub mod report;
pub mod space;
pub mod train;
