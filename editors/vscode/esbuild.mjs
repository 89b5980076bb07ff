// Bundles the extension and vscode-languageclient into dist/extension.js (`vscode` stays external).
// `--production` minifies and leaves out the source map, for the .vsix.
import * as esbuild from 'esbuild';

const production = process.argv.includes('--production');

await esbuild.build({
    entryPoints: ['src/extension.ts'],
    bundle: true,
    outfile: 'dist/extension.js',
    external: ['vscode'],
    format: 'cjs',
    platform: 'node',
    target: 'node20',
    minify: production,
    sourcemap: !production,
    logLevel: 'info',
});
