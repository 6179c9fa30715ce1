package server

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
)

// ExamplePath is where the browser example is served when
// Config.ExampleDir is set.
const ExamplePath = "/examples/web/"

// exampleFiles serves the built browser example in dir. The folder must
// hold an index.html, so that an unbuilt example fails at startup rather
// than with a 404 in the browser.
func exampleFiles(dir string) (http.Handler, error) {
	if _, err := os.Stat(filepath.Join(dir, "index.html")); err != nil {
		return nil, fmt.Errorf("server: browser example in %q is not built (run make web-example): %w", dir, err)
	}
	return http.StripPrefix(ExamplePath, http.FileServerFS(os.DirFS(dir))), nil
}

// withExample serves files under ExamplePath and everything else with api.
func withExample(api, files http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle(ExamplePath, files)
	mux.Handle("/", api)
	return mux
}
