//go:build !linux

package files

// datasync makes the data of f durable; without fdatasync(2), fsync.
func datasync(f File) error {
	if d, ok := f.(interface{ Datasync() error }); ok {
		return d.Datasync()
	}
	return f.Sync()
}

// startWriteback is a no-op where sync_file_range(2) does not exist.
func startWriteback(File) {}

// openDirect returns nil: O_DIRECT is used on Linux only.
func openDirect(FS, string) File { return nil }

// dropCache is a no-op here.
func dropCache(File) {}
