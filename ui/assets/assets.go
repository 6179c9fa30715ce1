// Package assets holds the admin UI's own stylesheet and its one script,
// embedded in the binary and served under /ui/assets/.
package assets

import "embed"

// Files are concord.css and live.js.
//
//go:embed concord.css live.js
var Files embed.FS
