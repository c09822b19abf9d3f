"""Running models: engines, the --model resolver, tiling, batch file upscaling."""
