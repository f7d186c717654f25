package config

// Export configures where the node sends results (and optionally the source
// series): the PACS destinations and the retry policy of the outbox.
type Export struct{}
