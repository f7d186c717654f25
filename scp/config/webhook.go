package config

import (
	"fmt"
	"net/url"
)

// Webhook sends analysis events as JSON POSTs to an HTTP endpoint (for
// radiology systems that do not read NATS), retried until it answers 2xx.
type Webhook struct {
	// URL of the endpoint; empty disables the webhook.
	URL string `yaml:"url"`
	// Secret signs each body (Otonode-Signature: sha256=HMAC); best given
	// as OTONODE_WEBHOOK_SECRET rather than in the file.
	Secret string `yaml:"secret"`
	// Events are the kinds sent: done, flagged, failed (default flagged).
	Events []string `yaml:"events"`
}

// Validate checks the webhook section.
func (w Webhook) Validate() error {
	if w.URL == "" {
		return nil
	}
	u, err := url.Parse(w.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("webhook.url %q is not an http(s) URL", w.URL)
	}
	for _, e := range w.Events {
		if e != "done" && e != "flagged" && e != "failed" {
			return fmt.Errorf("webhook.events: %q is not done, flagged or failed", e)
		}
	}
	return nil
}
