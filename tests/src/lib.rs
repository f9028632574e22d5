//! Tests of the whole platform through its real binaries, and `loadgen`, the open-loop HTTP
//! load generator the benchmark scripts in `scripts/` use.
