package config

import "testing"

func TestWebhookValidate(t *testing.T) {
	tests := []struct {
		w    Webhook
		good bool
	}{
		{Webhook{}, true},
		{Webhook{URL: "https://ris.example/otonode", Events: []string{"flagged", "failed"}}, true},
		{Webhook{URL: "ris.example/otonode"}, false},
		{Webhook{URL: "ftp://ris.example/"}, false},
		{Webhook{URL: "http://ris.example/", Events: []string{"exploded"}}, false},
	}
	for _, tt := range tests {
		if err := tt.w.Validate(); (err == nil) != tt.good {
			t.Errorf("%+v: err %v, want good=%v", tt.w, err, tt.good)
		}
	}
	c := Default()
	c.Webhook.URL = "not a url"
	if err := c.Validate(); err == nil {
		t.Error("Config.Validate accepted a bad webhook URL")
	}
}
