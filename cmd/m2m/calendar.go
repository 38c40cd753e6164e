package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"

	"github.com/m2mauth/m2m/internal/devserver"
	"github.com/m2mauth/m2m/verify"
)

// calendarPath is where the devserver command serves the example
// Calendar Service.
const calendarPath = "/calendar/events"

// calendar is the example resource server of the walk-through: a
// Calendar Service that accepts only tokens of audience "event", checked
// by package verify against the dev server's own JWKS. It keeps the last
// maxEvents events in memory. It is safe for concurrent use.
type calendar struct {
	mu     sync.Mutex
	events []calendarEvent // guarded by mu
	next   int             // guarded by mu; the last event's number
}

const maxEvents = 100

type calendarEvent struct {
	ID        string `json:"id"`
	Title     string `json:"title"`
	CreatedBy string `json:"created_by"`
}

// mountCalendar adds the Calendar Service to a started dev server and
// returns what stops its verifier.
func mountCalendar(ctx context.Context, s *devserver.Server) (func(), error) {
	v, err := verify.New(ctx, verify.Config{JWKSURL: s.JWKSURL(), Issuer: s.Issuer(), Audience: "event"})
	if err != nil {
		return nil, fmt.Errorf("starting the example Calendar Service: %w", err)
	}
	cal := &calendar{}
	s.Handle("GET "+calendarPath, v.Middleware("event.view")(http.HandlerFunc(cal.list)))
	s.Handle("POST "+calendarPath, v.Middleware("event.create")(http.HandlerFunc(cal.create)))
	return func() { v.Close() }, nil
}

func (c *calendar) list(w http.ResponseWriter, _ *http.Request) {
	c.mu.Lock()
	events := append([]calendarEvent{}, c.events...)
	c.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"events": events})
}

// create records an event; the body, when there is one, is JSON with an
// optional title.
func (c *calendar) create(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Title string `json:"title"`
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err == nil && len(b) > 0 {
		err = json.Unmarshal(b, &in)
	}
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "the body must be JSON such as {\"title\": \"standup\"}"})
		return
	}
	if in.Title == "" {
		in.Title = "untitled"
	}
	claims, _ := verify.ClaimsFromContext(r.Context())
	c.mu.Lock()
	c.next++
	ev := calendarEvent{ID: fmt.Sprintf("evt-%d", c.next), Title: in.Title, CreatedBy: claims.ClientID}
	c.events = append(c.events, ev)
	if len(c.events) > maxEvents {
		c.events = c.events[len(c.events)-maxEvents:]
	}
	c.mu.Unlock()
	writeJSON(w, http.StatusCreated, ev)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
