// Import first in a test file: makes require('vscode') load the fake.

import Module from 'node:module';

const fakePath = require.resolve('./vscode');
const resolver = Module as unknown as { _resolveFilename(request: string, ...rest: unknown[]): string };
const resolve = resolver._resolveFilename;
resolver._resolveFilename = function (request: string, ...rest: unknown[]) {
    return request === 'vscode' ? fakePath : resolve.call(this, request, ...rest);
};
