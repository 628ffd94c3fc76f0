{
  "targets": [
    {
      "target_name": "neam_sendfile",
      "sources": ["sendfile.c"],
      "cflags": ["-O2", "-Wall", "-Wextra"]
    }
  ]
}
