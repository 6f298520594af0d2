// ESLint for the dashboard's ES modules (browser) and their unit tests (node); `make lint` runs it.
import js from "@eslint/js";
import { defineConfig, globalIgnores } from "eslint/config";
import globals from "globals";

export default defineConfig([
  // uPlot is vendored as published; .venv holds installed copies of web/
  globalIgnores(["web/static/vendor/", "node_modules/", ".venv/", "build/"]),
  js.configs.recommended,
  { files: ["web/static/js/**/*.js"], languageOptions: { globals: globals.browser } },
  { files: ["tests/js/**/*.mjs", "eslint.config.js"], languageOptions: { globals: globals.node } },
]);
