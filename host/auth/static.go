package auth

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"github.com/concord-macp/concord/host/access"
	"github.com/concord-macp/concord/internal/filewatch"
)

// TokenEntry is one entry of a tokens file, in the reference runtime's
// format plus Concord's can_manage_policies and is_admin.
type TokenEntry struct {
	Token  string `json:"token"`
	Sender string `json:"sender"`
	// AllowedModes empty or absent allows every mode.
	AllowedModes []string `json:"allowed_modes,omitempty"`
	// CanStartSessions absent means true, as in the reference runtime.
	CanStartSessions *bool `json:"can_start_sessions,omitempty"`
	// MaxOpenSessions absent or null leaves the server's default.
	MaxOpenSessions       *int `json:"max_open_sessions,omitempty"`
	CanManageModeRegistry bool `json:"can_manage_mode_registry,omitempty"`
	IsObserver            bool `json:"is_observer,omitempty"`
	CanManagePolicies     bool `json:"can_manage_policies,omitempty"`
	IsAdmin               bool `json:"is_admin,omitempty"`
}

// Caller returns the caller a token entry stands for.
func (e TokenEntry) Caller() access.Caller {
	c := access.Caller{
		ID:                e.Sender,
		AllowedModes:      e.AllowedModes,
		CanStartSessions:  e.CanStartSessions == nil || *e.CanStartSessions,
		Observer:          e.IsObserver,
		CanManageModes:    e.CanManageModeRegistry,
		CanManagePolicies: e.CanManagePolicies,
		Admin:             e.IsAdmin,
	}
	if e.MaxOpenSessions != nil {
		c.MaxOpenSessions = *e.MaxOpenSessions
	}
	if len(c.AllowedModes) == 0 {
		c.AllowedModes = nil
	}
	return c
}

// Limits on a tokens file.
const (
	maxStaticTokenLen = 512
	minStaticTokenLen = 16
	maxTokensFileSize = 8 << 20
	maxAllowedModes   = 64
	maxModeNameLen    = 128
)

// ParseTokens parses a tokens file: a JSON list of entries, or an object
// whose "tokens" member is that list. Unknown fields, duplicate tokens,
// dot-shaped tokens (they would go to the JWT resolver) and malformed
// senders are refused; nothing of a refused file is used.
func ParseTokens(data []byte) ([]TokenEntry, error) {
	if len(data) > maxTokensFileSize {
		return nil, fmt.Errorf("tokens: %d bytes, more than %d", len(data), maxTokensFileSize)
	}
	data = bytes.TrimSpace(data)
	var entries []TokenEntry
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if len(data) > 0 && data[0] == '{' {
		var wrapped struct {
			Tokens *[]TokenEntry `json:"tokens"`
		}
		if err := dec.Decode(&wrapped); err != nil {
			return nil, fmt.Errorf("tokens: %w", err)
		}
		if wrapped.Tokens == nil {
			return nil, errors.New(`tokens: the object has no "tokens" list`)
		}
		entries = *wrapped.Tokens
	} else if err := dec.Decode(&entries); err != nil {
		return nil, fmt.Errorf("tokens: %w", err)
	}
	if dec.More() {
		return nil, errors.New("tokens: trailing data after the JSON value")
	}
	seen := make(map[string]int, len(entries))
	for i, e := range entries {
		if err := checkEntry(e); err != nil {
			return nil, fmt.Errorf("tokens: entry %d (sender %q): %w", i, e.Sender, err)
		}
		if j, dup := seen[e.Token]; dup {
			return nil, fmt.Errorf("tokens: entries %d and %d have the same token", j, i)
		}
		seen[e.Token] = i
	}
	return entries, nil
}

func checkEntry(e TokenEntry) error {
	if e.Token == "" || len(e.Token) > maxStaticTokenLen {
		return fmt.Errorf("a token must be 1 to %d characters (concord token makes one)", maxStaticTokenLen)
	}
	for i := 0; i < len(e.Token); i++ {
		if c := e.Token[i]; c <= ' ' || c >= 0x7f || c == '.' {
			return errors.New("a token must be visible ASCII without dots (a dot-shaped token is read as a JWT)")
		}
	}
	if err := checkSender(e.Sender); err != nil {
		return err
	}
	if len(e.AllowedModes) > maxAllowedModes {
		return fmt.Errorf("allowed_modes lists more than %d modes", maxAllowedModes)
	}
	for _, m := range e.AllowedModes {
		if m == "" || len(m) > maxModeNameLen {
			return fmt.Errorf("allowed_modes entry %q must be 1 to %d bytes", m, maxModeNameLen)
		}
	}
	if e.MaxOpenSessions != nil && *e.MaxOpenSessions < 0 {
		return errors.New("max_open_sessions must not be negative")
	}
	return nil
}

// staticEntry is a token as the resolver keeps it.
type staticEntry struct {
	token  []byte
	caller access.Caller
}

// tokenTable maps sha256(token) to its entry: looking a token up by its
// digest reveals nothing about the tokens through timing, and the final
// comparison is constant-time.
type tokenTable map[[sha256.Size]byte]staticEntry

func newTokenTable(entries []TokenEntry) tokenTable {
	t := make(tokenTable, len(entries))
	for _, e := range entries {
		t[sha256.Sum256([]byte(e.Token))] = staticEntry{token: []byte(e.Token), caller: e.Caller()}
	}
	return t
}

// StaticOptions configure the static token resolver.
type StaticOptions struct {
	// File is a tokens file, re-read on Reload and whenever its content
	// changes (polled every PollInterval).
	File string
	// JSON is an inline tokens document; it wins over File, as in the
	// reference runtime.
	JSON string
	// PollInterval is how often File is checked for changes (default
	// DefaultPollInterval; negative: only on Reload).
	PollInterval time.Duration
	Logger       *slog.Logger
}

// DefaultPollInterval is how often watched files are checked for changes.
const DefaultPollInterval = 2 * time.Second

// StaticTokens resolves opaque bearer tokens against a tokens file or an
// inline tokens document.
type StaticTokens struct {
	file    string
	log     *slog.Logger
	table   atomic.Pointer[tokenTable]
	watcher *filewatch.Watcher
}

// NewStaticTokens loads the tokens and, for a file, starts watching it.
// Close stops the watcher.
func NewStaticTokens(opts StaticOptions) (*StaticTokens, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.PollInterval == 0 {
		opts.PollInterval = DefaultPollInterval
	}
	s := &StaticTokens{file: opts.File, log: opts.Logger}
	if opts.JSON != "" {
		if opts.File != "" {
			s.log.Warn("both inline tokens JSON and a tokens file are set: the inline JSON is used, the file is ignored", "file", opts.File)
			s.file = ""
		}
		entries, err := ParseTokens([]byte(opts.JSON))
		if err != nil {
			return nil, fmt.Errorf("auth: inline %w", err)
		}
		warnShort(s.log, "inline tokens JSON", entries)
		t := newTokenTable(entries)
		s.table.Store(&t)
		return s, nil
	}
	if opts.File == "" {
		return nil, errors.New("auth: static tokens need a file or inline JSON")
	}
	if err := s.load(); err != nil {
		return nil, err
	}
	s.watcher = filewatch.Watch(opts.PollInterval, []string{opts.File}, s.load, s.log)
	return s, nil
}

// Len returns how many tokens are loaded.
func (s *StaticTokens) Len() int { return len(*s.table.Load()) }

// Reload re-reads the tokens file; on any error the tokens in use stay.
func (s *StaticTokens) Reload() error {
	if s.watcher == nil {
		return nil
	}
	return s.watcher.Reload()
}

// load reads and parses the file and swaps the table in.
func (s *StaticTokens) load() error {
	data, err := readBounded(s.file, maxTokensFileSize)
	if err != nil {
		return fmt.Errorf("auth: tokens file: %w", err)
	}
	entries, err := ParseTokens(data)
	if err != nil {
		return fmt.Errorf("auth: %s: %w", s.file, err)
	}
	warnShort(s.log, s.file, entries)
	t := newTokenTable(entries)
	if s.table.Swap(&t) != nil {
		s.log.Info("tokens file reloaded", "file", s.file, "tokens", len(t))
	}
	return nil
}

// Close stops watching the file.
func (s *StaticTokens) Close() {
	if s.watcher != nil {
		s.watcher.Close()
	}
}

// Resolve returns the caller of an opaque token.
func (s *StaticTokens) Resolve(token string) (access.Caller, error) {
	t := *s.table.Load()
	e, ok := t[sha256.Sum256([]byte(token))]
	if !ok || subtle.ConstantTimeCompare(e.token, []byte(token)) != 1 {
		return access.Caller{}, reject("unknown token")
	}
	return e.caller, nil
}

// readBounded reads a file of at most limit bytes.
func readBounded(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s is more than %d bytes", path, limit)
	}
	return data, nil
}

// warnShort logs the senders whose tokens are short enough to guess.
func warnShort(log *slog.Logger, source string, entries []TokenEntry) {
	var short []string
	for _, e := range entries {
		if len(e.Token) < minStaticTokenLen {
			short = append(short, e.Sender)
		}
	}
	if len(short) > 0 {
		log.Warn("tokens shorter than 16 characters can be guessed; make new ones with concord token", "source", source, "senders", short)
	}
}
