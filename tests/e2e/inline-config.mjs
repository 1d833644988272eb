// Inline traefik-oidc-auth blocks in the plugin's own configuration (issue 12): the pieces the
// inline end-to-end suite (inline.mjs) shares. Reads the golden fixtures of
// traefik-plugin/testdata/inline/ (layout in its README.md) and writes them into Traefik's
// dynamic configuration, typed (as a user pastes a YAML block) and label-shaped (every value a
// string, lists comma-joined or as indexed maps, as docker labels arrive).
import fs from 'node:fs';
import path from 'node:path';
import { ROOT } from './stack.mjs';

export const FIXTURES = path.join(ROOT, 'traefik-plugin', 'testdata', 'inline');

/** Every fixture name (NAME.yaml in the fixture directory), sorted. */
export function fixtureNames() {
  return fs.readdirSync(FIXTURES).filter((f) => f.endsWith('.yaml')).map((f) => f.slice(0, -5)).sort();
}

/** A fixture file: NAME.json (typed), NAME.labels.json / NAME.indexed.labels.json (label-shaped). */
export function readFixture(name, suffix = '.json') {
  return JSON.parse(fs.readFileSync(path.join(FIXTURES, name + suffix), 'utf8'));
}

/** The golden hash of a fixture. */
export function fixtureHash(name) {
  return fs.readFileSync(path.join(FIXTURES, `${name}.sha256`), 'utf8').trim();
}

/**
 * A value as a YAML flow scalar/collection that Traefik's file provider reads back unchanged.
 * JSON is YAML; the file provider first runs the file through Go's text/template, so "{{" in a
 * string is written as {{`{{`}} (what the README tells users to do).
 */
export function flowYaml(v) {
  if (Array.isArray(v)) return `[${v.map(flowYaml).join(', ')}]`;
  if (v && typeof v === 'object') {
    return `{${Object.entries(v).map(([k, e]) => `${JSON.stringify(k)}: ${flowYaml(e)}`).join(', ')}}`;
  }
  if (typeof v === 'string') return JSON.stringify(v).replaceAll('{{', '{{`{{`}}');
  return JSON.stringify(v);
}

/**
 * The map Traefik's label parser gives the plugin for a block written as docker labels with
 * lower-cased keys (traefik-plugin/testdata/inline/*.labels.json are real samples): every
 * scalar a string; a list of scalars written comma-joined stays one string, or, with
 * `indexed`, a map {"0": ..., "1": ...} (labels Key.0, Key.1); a list of objects written as
 * Key[0].Sub becomes a list of maps.
 */
export function labelShape(v, indexed = false) {
  if (Array.isArray(v)) {
    if (v.every((e) => e === null || typeof e !== 'object') && !indexed) return v.map(String).join(',');
    if (indexed) return Object.fromEntries(v.map((e, i) => [String(i), labelShape(e, indexed)]));
    return v.map((e) => labelShape(e, indexed));
  }
  if (v && typeof v === 'object') {
    return Object.fromEntries(Object.entries(v).map(([k, e]) => [k.toLowerCase(), labelShape(e, indexed)]));
  }
  return String(v);
}
