/**
 * The registry's API suite: the OCI Distribution Spec v1.1 (and Docker Registry API v2) as a client
 * sees it. It runs against any target (the core called directly, or a real HTTP server), so each
 * runtime adapter is held to the same behaviour. Every test gets a fresh, empty registry.
 */
import { describe } from 'vitest';
import type { MakeTarget } from './helpers.js';
import { describeBlobs } from './suite-blobs.js';
import { describeListings } from './suite-listings.js';
import { describeManifests } from './suite-manifests.js';
import { describeModes, describeNamesAndRoutes, describeRoot } from './suite-routes.js';
import { describeUploads } from './suite-uploads.js';

export type { ApiTarget, MakeTarget } from './helpers.js';

export function describeRegistryApi(label: string, makeTarget: MakeTarget): void {
  describe(label, () => {
    describeRoot(makeTarget);
    describeUploads(makeTarget);
    describeBlobs(makeTarget);
    describeManifests(makeTarget);
    describeListings(makeTarget);
    describeNamesAndRoutes(makeTarget);
    describeModes(makeTarget);
  });
}
