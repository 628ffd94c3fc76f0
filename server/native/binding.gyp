{
  "targets": [
    {
      "target_name": "neam_native",
      "sources": ["native.c"],
      "cflags": ["-O2", "-Wall", "-Wextra"]
    }
  ]
}
