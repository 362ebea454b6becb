//! Streaming operators written on the typed state API.

pub mod interval_join;
