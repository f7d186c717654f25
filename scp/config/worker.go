package config

// Worker configures the analysis worker: the child process `otonode serve`
// supervises, or a separate `otonode worker`.
type Worker struct{}
