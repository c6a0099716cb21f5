{
  "targets": [
    {
      "target_name": "flatrank_linalg",
      "sources": ["flatrank_linalg.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS"],
      "cflags_cc": ["-O2"],
      "libraries": ["-lopenblas", "-llapacke"]
    }
  ]
}
