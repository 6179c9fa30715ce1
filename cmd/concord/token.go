package main

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/concord-macp/concord/host/auth"
)

// token runs `concord token`: it prints a new random bearer token and a
// tokens-file entry for it with the capabilities the flags give.
func token(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("concord token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var e auth.TokenEntry
	var modes string
	var noStart bool
	maxOpen := -1
	fs.StringVar(&e.Sender, "sender", "", "the identity the token authenticates as, e.g. agent://alice (required)")
	fs.StringVar(&modes, "modes", "", "comma-separated modes it may start sessions in (empty: every mode)")
	fs.BoolVar(&noStart, "no-start", false, "may not start sessions (only take part in them)")
	fs.IntVar(&maxOpen, "max-open-sessions", -1, "sessions it may have open at once (-1: the server's default)")
	fs.BoolVar(&e.IsObserver, "observer", false, "may read and watch every session (and never send)")
	fs.BoolVar(&e.CanManageModeRegistry, "manage-modes", false, "may upload, register, promote and remove modes")
	fs.BoolVar(&e.CanManagePolicies, "manage-policies", false, "may register, push and remove policies")
	fs.BoolVar(&e.IsAdmin, "admin", false, "may call AdminService (inspect, replay, audit trail) and the admin UI")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: concord token --sender ID [flags]\n\nPrints a new random token, then its entry for the tokens file (--auth-tokens-file).\n\nFlags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if e.Sender == "" || fs.NArg() != 0 {
		fs.Usage()
		return 2
	}
	if modes != "" {
		e.AllowedModes = strings.Split(modes, ",")
	}
	if noStart {
		f := false
		e.CanStartSessions = &f
	}
	if maxOpen >= 0 {
		e.MaxOpenSessions = &maxOpen
	}
	// 256 random bits in URL-safe base64: 43 characters, never a dot; one
	// that starts with - or _ is drawn again, so that it never reads as a
	// command-line flag.
	for e.Token == "" || e.Token[0] == '-' || e.Token[0] == '_' {
		var raw [32]byte
		if _, err := rand.Read(raw[:]); err != nil {
			fmt.Fprintln(stderr, "concord token:", err)
			return 1
		}
		e.Token = base64.RawURLEncoding.EncodeToString(raw[:])
	}
	entry, err := json.MarshalIndent(e, "", "  ")
	if err == nil {
		_, err = auth.ParseTokens(append(append([]byte("["), entry...), ']'))
	}
	if err != nil {
		fmt.Fprintln(stderr, "concord token:", err)
		return 2
	}
	fmt.Fprintln(stdout, e.Token)
	fmt.Fprintln(stdout, string(entry))
	return 0
}
