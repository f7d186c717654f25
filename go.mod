module github.com/otonode/otonode

go 1.26
