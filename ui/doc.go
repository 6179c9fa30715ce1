// Package ui is Concord's admin console: server-rendered pages under /ui/
// on the API's port, live through server-sent events. It reads sessions
// only through the kernel's caller-scoped View and the registries' public
// methods, and changes things through the same calls the RPCs make.
//
// Who may do what: with dev auth on loopback the console acts as the local
// operator; otherwise every page needs an OIDC login (ui/login). A caller
// with Admin may see and change, an Observer without Admin may only see,
// anyone else is refused. Forms are protected against cross-origin
// submission, uploads are capped, and every input is checked before
// anything is saved.
package ui
