package sqlite

// OnSnapshotPinned runs f once Snapshot has pinned its databases and let
// the writers go, before it copies; the returned func undoes it.
func OnSnapshotPinned(f func()) func() {
	snapshotPinned = f
	return func() { snapshotPinned = nil }
}
