{
  "targets": [
    {
      "target_name": "neam_native",
      "sources": ["native.c", "sendfile.c", "write_file.c", "memory.c", "sha256.c", "remove_tree.c"],
      "cflags": ["-O2", "-Wall", "-Wextra"]
    }
  ]
}
