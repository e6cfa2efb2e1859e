//! `/metrics`: the runtime's and the store's figures in Prometheus text format.
