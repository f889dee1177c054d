complete --keep-order --exclusive --command bro --arguments "(COMPLETE=fish bro -- (commandline --current-process --tokenize --cut-at-cursor) (commandline --current-token))"
