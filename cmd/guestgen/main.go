// Command guestgen writes the reflection-free codecs of a Concord mode's
// types: for every struct of a Go package that has `wire` or `json` field
// tags it generates, into guest_gen.go,
//
//   - AppendWire and DecodeWire, the protobuf-wire encoding of its fields
//     with a `wire:"N"` tag (the mode state and its records);
//   - AppendJSON, a JSON object of its fields with a `json:"name"` tag, in
//     declaration order (the view);
//   - DecodePayload, for a struct with only json tags a strict JSON object
//     decoder (guest.Object), for one with only wire tags a protobuf
//     decoder (the payloads).
//
// These are the methods abi/guest's Machine and On ask for. Run it with
// `go generate` from a directive in the package:
//
//	//go:generate go tool guestgen
//
// after pinning it in go.mod (`go get -tool github.com/concord-macp/concord/cmd/guestgen`).
// It reads the package's non-test files, parses only their syntax (no type
// checking, no dependencies), and refuses a field type it cannot encode.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/concord-macp/concord/abi/guest/guestgen"
)

func main() {
	out := flag.String("o", "guest_gen.go", "output file, in the package directory")
	flag.Usage = func() {
		fmt.Fprintln(flag.CommandLine.Output(), "usage: guestgen [-o FILE] [DIR]")
		flag.PrintDefaults()
	}
	flag.Parse()
	dir := "."
	if flag.NArg() > 1 {
		flag.Usage()
		os.Exit(2)
	}
	if flag.NArg() == 1 {
		dir = flag.Arg(0)
	}
	src, err := guestgen.Generate(dir, filepath.Base(*out))
	if err != nil {
		fmt.Fprintln(os.Stderr, "guestgen:", err)
		os.Exit(1)
	}
	if err := os.WriteFile(filepath.Join(dir, *out), src, 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "guestgen:", err)
		os.Exit(1)
	}
}
