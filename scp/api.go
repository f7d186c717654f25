package scp

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/otonode/otonode/store/files"
	"github.com/otonode/otonode/store/index"
)

// API is the node's HTTP API on the operations port:
//
//	POST /series/{uid}/complete   complete the receiving revision now
//	GET  /series/{uid}            the series and its current revision's state
//
// Answers are JSON; errors are {"error": "..."} with 400 (bad UID),
// 404 (unknown series) or 409 (not receiving).
type API struct {
	Index      *index.Index
	Policy     index.Policy
	OnComplete func([]index.Completion)
	Logger     *slog.Logger
}

// Register adds the API's routes to mux.
func (a *API) Register(mux *http.ServeMux) {
	mux.HandleFunc("POST /series/{uid}/complete", a.complete)
	mux.HandleFunc("GET /series/{uid}", a.series)
}

// SeriesState is what GET /series/{uid} answers.
type SeriesState struct {
	SeriesInstanceUID string    `json:"series_instance_uid"`
	StudyInstanceUID  string    `json:"study_instance_uid"`
	Modality          string    `json:"modality"`
	Instances         int       `json:"instances"`
	Revision          int       `json:"revision"`
	State             string    `json:"state"`
	Reason            string    `json:"reason,omitempty"`
	CompletedAt       time.Time `json:"completed_at,omitzero"`
}

func (a *API) uid(w http.ResponseWriter, r *http.Request) (string, bool) {
	uid, err := files.CleanUID(r.PathValue("uid"))
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return "", false
	}
	return uid, true
}

func (a *API) complete(w http.ResponseWriter, r *http.Request) {
	uid, ok := a.uid(w, r)
	if !ok {
		return
	}
	c, err := a.Index.Complete(r.Context(), uid, time.Now(), a.Policy)
	switch {
	case errors.Is(err, index.ErrNotFound):
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "series " + uid + " is not indexed"})
		return
	case errors.Is(err, index.ErrState):
		writeJSON(w, http.StatusConflict, map[string]string{"error": err.Error()})
		return
	case err != nil:
		a.Logger.Error("explicit completion", "series_instance_uid", uid, "err", err)
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "completion failed"})
		return
	}
	a.Logger.Info("series complete", "series_instance_uid", uid, "revision", c.Revision, "reason", c.Reason,
		"instances", c.Instances)
	if a.OnComplete != nil {
		a.OnComplete([]index.Completion{c})
	}
	writeJSON(w, http.StatusOK, map[string]any{"series_instance_uid": c.SeriesInstanceUID, "revision": c.Revision,
		"instances": c.Instances, "reason": c.Reason, "completed_at": c.CompletedAt})
}

func (a *API) series(w http.ResponseWriter, r *http.Request) {
	uid, ok := a.uid(w, r)
	if !ok {
		return
	}
	s, err := a.Index.Series(r.Context(), uid)
	if errors.Is(err, index.ErrNotFound) {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "series " + uid + " is not indexed"})
		return
	}
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, SeriesState{SeriesInstanceUID: s.SeriesInstanceUID, StudyInstanceUID: s.StudyInstanceUID,
		Modality: s.Modality, Instances: s.Instances, Revision: s.Revision, State: string(s.State), Reason: s.Reason,
		CompletedAt: s.CompletedAt})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}
