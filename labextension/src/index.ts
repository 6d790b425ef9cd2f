/**
 * The nbtools sidebar: the pipeline of the project in the file browser's folder, its stages
 * with their status in the latest run, the run history, live progress, and the actions
 * (run, run a stage, run from a stage, resume, cancel, open records, MLflow, the diff report
 * of two runs).
 *
 * Everything comes from the server extension's REST API (/nbtools/api/...); the panel holds
 * no state that the run records do not hold, so a reload shows the same thing.
 */
import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { MainAreaWidget } from '@jupyterlab/apputils';
import { URLExt } from '@jupyterlab/coreutils';
import { IDefaultFileBrowser } from '@jupyterlab/filebrowser';
import { ServerConnection } from '@jupyterlab/services';
import { IFrame, LabIcon } from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';


const POLL_MS = 1500;
const ICON = new LabIcon({
  name: 'nbtools:pipeline',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24"><g class="jp-icon3" fill="#616161">' +
    '<circle cx="5" cy="6" r="3"/><circle cx="19" cy="6" r="3"/><circle cx="12" cy="18" r="3"/>' +
    '<rect x="7" y="5" width="10" height="2"/><rect x="11" y="8" width="2" height="8"/></g></svg>'
});

interface IStage {
  name: string;
  inputs: string[];
  parameters: { name: string; kind: string; accepts: string }[];
}

interface IProject {
  name: string;
  path: string;
  mlflow_ui: boolean;
  stages: IStage[];
}

interface IStageSummary {
  status: string;
  duration_s: number | null;
  why: string | null;
  reused_from: string | null;
}

interface IRun {
  run_id: string;
  status: string;
  started_at: string;
  duration_s: number | null;
  error: string | null;
  metrics: Record<string, unknown>;
  stages: Record<string, IStageSummary>;
}

/** Call the nbtools API; return the reply's text, or throw an Error with the server's message. */
async function request(
  endpoint: string,
  project: string,
  init: RequestInit = {},
  query: Record<string, string> = {}
): Promise<string> {
  const settings = ServerConnection.makeSettings();
  const search = new URLSearchParams({ path: project, ...query }).toString();
  const url = URLExt.join(settings.baseUrl, 'nbtools', 'api', endpoint) + '?' + search;
  const response = await ServerConnection.makeRequest(url, init, settings);
  const text = await response.text();
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try {
      message = JSON.parse(text).message || message;
    } catch {
      // not JSON: keep the status line
    }
    throw new Error(message);
  }
  return text;
}

/** Call the nbtools API and parse its JSON reply. */
async function api<T>(
  endpoint: string,
  project: string,
  init: RequestInit = {},
  query: Record<string, string> = {}
): Promise<T> {
  const text = await request(endpoint, project, init, query);
  return (text ? JSON.parse(text) : {}) as T;
}

function element<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attributes: Record<string, string> = {},
  ...children: (Node | string)[]
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    node.setAttribute(key, value);
  }
  node.append(...children);
  return node;
}

function button(label: string, title: string, onClick: () => void, cls = ''): HTMLButtonElement {
  const node = element('button', { class: `jp-mod-styled nbtools-button ${cls}`, title }, label);
  node.addEventListener('click', event => {
    event.stopPropagation();
    onClick();
  });
  return node;
}

function seconds(value: number | null | undefined): string {
  return value === null || value === undefined ? '-' : `${value.toFixed(1)} s`;
}

function short(value: unknown): string {
  if (typeof value === 'number') {
    return Number.isInteger(value) ? String(value) : value.toPrecision(4);
  }
  return value === null || value === undefined ? '-' : JSON.stringify(value);
}

const ACTIVE = new Set(['running']);
const RESUMABLE = new Set(['failed', 'cancelled', 'interrupted']);

/** The sidebar widget. */
class PipelinePanel extends Widget {
  private folder = '';
  private project: IProject | null = null;
  private runs: IRun[] = [];
  private selected: string | null = null;
  private compared = new Set<string>();
  private timer: number | undefined;
  private message = element('div', { class: 'nbtools-message' });
  private content = element('div', { class: 'nbtools-content' });
  private parameters = element('textarea', {
    class: 'nbtools-parameters',
    rows: '2',
    placeholder: 'Parameters, one NAME=VALUE (or STAGE.NAME=VALUE) a line',
    title: 'Overrides for the next run, as `nbtools run -p` takes them'
  });

  constructor(private app: JupyterFrontEnd) {
    super();
    this.id = 'nbtools-pipeline';
    this.addClass('nbtools-panel');
    this.title.icon = ICON;
    this.title.caption = 'nbtools pipeline';
    this.node.append(this.message, this.content);
  }

  /** Show the project at or above ``folder`` (relative to the Jupyter root). */
  async setFolder(folder: string): Promise<void> {
    this.folder = folder;
    this.selected = null;
    this.compared.clear();
    await this.refresh();
  }

  protected onAfterShow(): void {
    void this.refresh();
    this.timer = window.setInterval(() => void this.poll(), POLL_MS);
  }

  protected onBeforeHide(): void {
    window.clearInterval(this.timer);
  }

  private async poll(): Promise<void> {
    if (this.project && (this.runs.some(r => ACTIVE.has(r.status)) || !this.runs.length)) {
      await this.loadRuns();
    }
  }

  async refresh(): Promise<void> {
    try {
      this.project = await api<IProject>('project', this.folder);
      this.say('');
      await this.loadRuns();
    } catch (error) {
      this.project = null;
      this.runs = [];
      this.content.replaceChildren(
        element('p', { class: 'nbtools-empty' }, `No nbtools project here: ${error}`)
      );
    }
  }

  private async loadRuns(): Promise<void> {
    if (!this.project) {
      return;
    }
    const reply = await api<{ runs: IRun[] }>('runs', this.project.path);
    this.runs = reply.runs;
    this.render();
  }

  private say(text: string, error = false): void {
    this.message.textContent = text;
    this.message.classList.toggle('nbtools-error', error);
  }

  private async act(what: string, action: () => Promise<void>): Promise<void> {
    this.say(`${what}…`);
    try {
      await action();
      this.say('');
    } catch (error) {
      this.say(`${what} failed: ${(error as Error).message}`, true);
    }
    await this.loadRuns();
  }

  private overrides(): Record<string, unknown> {
    const parameters: Record<string, unknown> = {};
    for (const line of this.parameters.value.split('\n')) {
      const at = line.indexOf('=');
      if (line.trim() && at > 0) {
        const raw = line.slice(at + 1).trim();
        let value: unknown = raw;
        try {
          value = JSON.parse(raw);
        } catch {
          value = raw;
        }
        parameters[line.slice(0, at).trim()] = value;
      }
    }
    return parameters;
  }

  private start(body: Record<string, unknown>, what: string): Promise<void> {
    return this.act(what, async () => {
      const reply = await api<{ run_id: string }>('runs', this.project!.path, {
        method: 'POST',
        body: JSON.stringify(body)
      });
      this.selected = reply.run_id;
    });
  }

  private run(mode: string, stage?: string): Promise<void> {
    const body = { mode, stage, parameters: this.overrides() };
    const what = mode === 'all' ? 'Starting the pipeline' : `Starting ${mode} ${stage}`;
    return this.start(body, what);
  }

  private async open(run: string, stage: string, kind: string): Promise<void> {
    await this.act(`Opening the ${kind} of ${stage}`, async () => {
      const reply = await api<{ path: string }>(`runs/${run}/record`, this.project!.path, {}, {
        stage,
        kind
      });
      await this.app.commands.execute('docmanager:open', { path: reply.path });
    });
  }

  private async mlflow(run: string): Promise<void> {
    await this.act('Opening MLflow', async () => {
      const reply = await api<{ url: string }>(`runs/${run}/mlflow`, this.project!.path);
      window.open(reply.url, '_blank', 'noopener');
    });
  }

  /** Open the two checked runs' diff report (the page `nbtools runs diff` writes) in a tab. */
  private async compare(): Promise<void> {
    const [first, second] = this.runs
      .map(r => r.run_id)
      .filter(id => this.compared.has(id))
      .reverse(); // older run first, as the history lists newest first
    await this.act('Comparing runs', async () => {
      const page = await request('diff', this.project!.path, {}, { runs: `${first},${second}` });
      // No script runs in the report and it loads nothing: a fully sandboxed frame shows it.
      const frame = new IFrame({ sandbox: [] });
      frame.node.querySelector('iframe')!.srcdoc = page;
      const widget = new MainAreaWidget({ content: frame });
      widget.id = `nbtools-diff-${first}-${second}`;
      widget.addClass('nbtools-diff');
      widget.title.label = `Diff ${first.slice(-6)} / ${second.slice(-6)}`;
      widget.title.caption = `Run ${first} against run ${second}`;
      widget.title.icon = ICON;
      widget.title.closable = true;
      this.app.shell.add(widget, 'main');
      this.app.shell.activateById(widget.id);
    });
  }

  private render(): void {
    const project = this.project!;
    const shown = this.runs.find(r => r.run_id === this.selected) ?? this.runs[0];
    const header = element(
      'div',
      { class: 'nbtools-header' },
      element('h2', {}, `Pipeline ${project.name}`),
      element('div', { class: 'nbtools-path' }, `/${project.path}`),
      element(
        'div',
        { class: 'nbtools-toolbar' },
        button('▶ Run pipeline', 'Run every stage (unchanged stages are reused)', () =>
          void this.run('all')
        , 'nbtools-run-all'),
        button('⟳', 'Refresh', () => void this.refresh())
      ),
      this.parameters
    );
    this.content.replaceChildren(header, this.stagesView(project, shown), this.runsView());
  }

  private stagesView(project: IProject, run: IRun | undefined): HTMLElement {
    const rows = project.stages.map(stage => {
      const state = run?.stages[stage.name];
      const status = state?.status ?? '-';
      const how = state?.reused_from ? `cached from ${state.reused_from}` : state?.why ?? '';
      const actions = element(
        'div',
        { class: 'nbtools-actions' },
        button('▶', `Run only ${stage.name}`, () => void this.run('stage', stage.name)),
        button('⇥', `Run ${stage.name} and everything after it`, () =>
          void this.run('from', stage.name)
        )
      );
      if (run && state && ['succeeded', 'failed', 'reused'].includes(status)) {
        actions.append(
          button('nb', 'Open the executed notebook', () =>
            void this.open(run.run_id, stage.name, 'notebook')
          , 'nbtools-open-notebook'),
          button('html', 'Open the HTML record', () =>
            void this.open(run.run_id, stage.name, 'html')
          , 'nbtools-open-html')
        );
      }
      return element(
        'tr',
        { 'data-stage': stage.name, class: `nbtools-status-${status.replace(' ', '-')}` },
        element('td', {}, element('div', { class: 'nbtools-stage-name' }, stage.name), actions),
        element('td', { class: 'nbtools-stage-status', title: how }, status),
        element('td', {}, seconds(state?.duration_s))
      );
    });
    const title = run ? `Stages in run ${run.run_id}` : 'Stages (no run yet)';
    return element(
      'section',
      { class: 'nbtools-stages' },
      element('h3', {}, title),
      element('table', {}, ...rows)
    );
  }

  private runsView(): HTMLElement {
    const rows = this.runs.map(run => {
      const states = Object.values(run.stages);
      const executed = states.filter(s => ['succeeded', 'failed'].includes(s.status)).length;
      const reused = states.filter(s => s.status === 'reused').length;
      const check = element('input', { type: 'checkbox', title: 'Select two runs to compare' });
      check.checked = this.compared.has(run.run_id);
      check.addEventListener('click', event => event.stopPropagation());
      check.addEventListener('change', () => {
        if (check.checked) {
          this.compared.add(run.run_id);
        } else {
          this.compared.delete(run.run_id);
        }
        this.render();
      });
      const actions = element('td', { class: 'nbtools-actions' });
      if (ACTIVE.has(run.status)) {
        actions.append(
          button('■', 'Cancel this run', () =>
            void this.act('Cancelling', async () => {
              await api(`runs/${run.run_id}/cancel`, this.project!.path, { method: 'POST' });
            })
          , 'nbtools-cancel')
        );
      }
      if (RESUMABLE.has(run.status)) {
        actions.append(
          button('↻', 'Resume this run', () =>
            void this.start({ resume: run.run_id }, 'Resuming')
          , 'nbtools-resume')
        );
      }
      if (this.project!.mlflow_ui) {
        actions.append(button('MLflow', 'Open in MLflow', () => void this.mlflow(run.run_id)));
      }
      const metrics = Object.entries(run.metrics)
        .map(([k, v]) => `${k}=${short(v)}`)
        .join(' ');
      const row = element(
        'tr',
        {
          'data-run-id': run.run_id,
          class: `nbtools-run nbtools-status-${run.status}`,
          title: run.error ?? 'Show this run’s stages'
        },
        element('td', {}, check),
        element(
          'td',
          { class: 'nbtools-run-cell' },
          element('div', { class: 'nbtools-run-id' }, run.run_id),
          element(
            'div',
            { class: 'nbtools-run-detail' },
            element('span', { class: 'nbtools-run-status' }, run.status),
            ` · ${seconds(run.duration_s)} · ${executed} run, ${reused} cached`
          ),
          element('div', { class: 'nbtools-metrics' }, metrics)
        ),
        actions
      );
      row.classList.toggle('nbtools-selected', run.run_id === this.selected);
      row.addEventListener('click', () => {
        this.selected = run.run_id;
        this.render();
      });
      return row;
    });
    const compare = button('Compare', 'Compare the two selected runs', () => void this.compare());
    compare.classList.add('nbtools-compare');
    compare.disabled = this.compared.size !== 2;
    return element(
      'section',
      { class: 'nbtools-runs' },
      element('h3', {}, 'Runs', compare),
      rows.length
        ? element('table', {}, ...rows)
        : element('p', { class: 'nbtools-empty' }, 'No runs yet.')
    );
  }
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'nbtools:pipeline-panel',
  description: 'A sidebar showing and driving the nbtools pipeline of the current folder.',
  autoStart: true,
  optional: [ILayoutRestorer, IDefaultFileBrowser],
  activate: (
    app: JupyterFrontEnd,
    restorer: ILayoutRestorer | null,
    browser: IDefaultFileBrowser | null
  ) => {
    const panel = new PipelinePanel(app);
    app.shell.add(panel, 'left', { rank: 600 });
    restorer?.add(panel, panel.id);
    if (browser) {
      browser.model.pathChanged.connect((_, change) => void panel.setFolder(change.newValue));
      void panel.setFolder(browser.model.path);
    } else {
      void panel.setFolder('');
    }
  }
};

export default plugin;
