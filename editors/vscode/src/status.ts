// The status bar item: driven by the server's `codestral/status` notifications and by its
// `$/progress` reports (model loading), plus what the extension itself knows (starting, failed).

export const STATUS_NOTIFICATION = 'codestral/status';

export type ServerState = 'loading' | 'ready' | 'error' | 'disabled';

/** Params of `codestral/status`. */
export interface ServerStatus {
    state: ServerState;
    message: string;
    lastLatencyMs: number | null;
    model: string | null;
    /** The backend that answered the last suggestion shown (its label); null before the first. */
    lastBackend?: string | null;
}

/** A `$/progress` value of work-done progress (LSP WorkDoneProgressBegin | Report | End). */
export type ProgressValue =
    | { kind: 'begin'; title: string; message?: string; percentage?: number }
    | { kind: 'report'; message?: string; percentage?: number }
    | { kind: 'end'; message?: string };

interface Progress {
    title: string;
    message?: string;
    percentage?: number;
}

/** What the item shows. */
export interface Presentation {
    text: string;
    tooltip: string;
    error: boolean;
}

/** The part of vscode.StatusBarItem that this module sets. */
export interface StatusItem {
    text: string;
    tooltip: unknown;
    backgroundColor: unknown;
    show(): void;
}

const ICONS: Record<ServerState, string> = {
    loading: '$(loading~spin)',
    ready: '$(sparkle)',
    error: '$(error)',
    disabled: '$(circle-slash)',
};

export function present(status: ServerStatus, progress: Progress | undefined): Presentation {
    const busy = progress !== undefined && status.state !== 'error';
    const icon = busy ? ICONS.loading : ICONS[status.state];
    let suffix = '';
    if (busy && progress.percentage !== undefined) {
        suffix = ` ${Math.round(progress.percentage)}%`;
    } else if (status.state === 'ready' && status.lastLatencyMs !== null) {
        suffix = ` ${Math.round(status.lastLatencyMs)} ms`;
    }
    const lines = [`Codestral: ${status.message || status.state}`];
    if (progress) {
        const pct = progress.percentage !== undefined ? ` (${Math.round(progress.percentage)}%)` : '';
        lines.push(`${progress.title}${progress.message ? `: ${progress.message}` : ''}${pct}`);
    }
    if (status.model) {
        lines.push(`Model: ${status.model}`);
    }
    if (status.lastLatencyMs !== null) {
        lines.push(`Last completion: ${Math.round(status.lastLatencyMs)} ms`);
    }
    if (status.lastBackend) {
        lines.push(`Last suggestion from: ${status.lastBackend}`);
    }
    lines.push('Click to show the log');
    return { text: `${icon} Codestral${suffix}`, tooltip: lines.join('\n'), error: status.state === 'error' };
}

export class StatusBar {
    private status: ServerStatus = { state: 'loading', message: 'Starting', lastLatencyMs: null, model: null };
    private readonly progress = new Map<string | number, Progress>();

    constructor(private readonly item: StatusItem, private readonly errorColor: unknown) {
        this.render();
        item.show();
    }

    get state(): ServerState {
        return this.status.state;
    }

    /** The extension is starting the server. */
    starting(message = 'Starting the server'): void {
        this.progress.clear();
        this.set({ state: 'loading', message, lastLatencyMs: null, model: null });
    }

    /** The server could not be found or started, or it stopped. */
    failed(message: string): void {
        this.progress.clear();
        this.set({ ...this.status, state: 'error', message });
    }

    /** A `codestral/status` notification. Missing fields keep what we knew. */
    onServerStatus(params: Partial<ServerStatus>): void {
        this.set({
            state: params.state && params.state in ICONS ? params.state : this.status.state,
            message: params.message ?? '',
            lastLatencyMs: params.lastLatencyMs !== undefined ? params.lastLatencyMs : this.status.lastLatencyMs,
            model: params.model !== undefined ? params.model : this.status.model,
            lastBackend: params.lastBackend !== undefined ? params.lastBackend : this.status.lastBackend,
        });
    }

    /** A `$/progress` report of work-done progress with this token. */
    onProgress(token: string | number, value: ProgressValue): void {
        if (value.kind === 'begin') {
            this.progress.set(token, { title: value.title, message: value.message, percentage: value.percentage });
        } else if (value.kind === 'report') {
            const known = this.progress.get(token);
            if (known) {
                this.progress.set(token, { ...known, message: value.message ?? known.message,
                    percentage: value.percentage ?? known.percentage });
            }
        } else {
            this.progress.delete(token);
        }
        this.render();
    }

    private set(status: ServerStatus): void {
        this.status = status;
        this.render();
    }

    private render(): void {
        const latest = [...this.progress.values()].pop();
        const shown = present(this.status, latest);
        this.item.text = shown.text;
        this.item.tooltip = shown.tooltip;
        this.item.backgroundColor = shown.error ? this.errorColor : undefined;
    }
}
