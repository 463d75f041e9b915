"""y-protocols messages (`messages`, `awareness`), crdtdoc's extension messages (`extension`),
and the sans-I/O sync session that drives a replica through them (`session`); PROTOCOL.md beside
them gives the bytes. Import the submodule you need: this package loads nothing itself."""
