package mpac

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Limits of a scope.
const (
	MaxScopePaths = 64
	MaxPathBytes  = 1024
)

// CleanScope checks the paths of a scope and returns them sorted, the form
// the state keeps.
func CleanScope(paths []string) ([]string, error) {
	switch {
	case len(paths) == 0:
		return nil, errors.New("a scope needs at least one path")
	case len(paths) > MaxScopePaths:
		return nil, fmt.Errorf("a scope has at most %d paths, got %d", MaxScopePaths, len(paths))
	}
	for _, p := range paths {
		if err := checkPath(p); err != nil {
			return nil, err
		}
	}
	out := append([]string(nil), paths...)
	sort.Strings(out)
	for i := 1; i < len(out); i++ {
		if out[i] == out[i-1] {
			return nil, fmt.Errorf("path %q is listed twice", out[i])
		}
	}
	return out, nil
}

func checkPath(p string) error {
	if p == "" || len(p) > MaxPathBytes {
		return fmt.Errorf("path %q must have 1 to %d bytes", p, MaxPathBytes)
	}
	for _, seg := range strings.Split(p, "/") {
		switch seg {
		case "":
			return fmt.Errorf("path %q has an empty segment (leading, trailing or doubled slash)", p)
		case ".", "..":
			return fmt.Errorf("path %q has a %q segment", p, seg)
		}
	}
	return nil
}

// PathsOverlap reports whether two paths are equal or one is a directory
// prefix of the other.
func PathsOverlap(a, b string) bool {
	if len(a) > len(b) {
		a, b = b, a
	}
	return strings.HasPrefix(b, a) && (len(a) == len(b) || b[len(a)] == '/')
}

// ScopesOverlap reports whether any path of a overlaps any path of b.
func ScopesOverlap(a, b []string) bool {
	for _, x := range a {
		for _, y := range b {
			if PathsOverlap(x, y) {
				return true
			}
		}
	}
	return false
}
