// @ts-check
import js from '@eslint/js';
import prettier from 'eslint-config-prettier';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'cdk.out/', 'coverage/'] },
  js.configs.recommended,
  ...tseslint.configs.strictTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/restrict-template-expressions': ['error', { allowNumber: true }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
    },
  },
  {
    // The protocol core speaks Web Request/Response only; concrete runtimes and drivers stay outside.
    files: ['functions/registry/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['node:http', 'node:https', 'http', 'https', 'node:fs', 'node:fs/*', 'fs'],
              message:
                'The registry core speaks Request/Response; use the StorageDriver and MetadataStore interfaces.',
            },
            {
              group: ['@aws-sdk/*', '@azure/*', '@google-cloud/*', 'aws-lambda'],
              message: 'Cloud SDKs belong in storage/, metadata/ or events/ drivers.',
            },
            {
              group: [
                '**/storage/filesystem*',
                '**/storage/memory*',
                '**/metadata/storage-backed*',
                '**/http/*',
                '**/compose*',
                '**/config*',
              ],
              message: 'The registry core depends on interfaces only.',
            },
          ],
        },
      ],
    },
  },
  {
    files: ['**/*.js', '**/*.mjs'],
    extends: [tseslint.configs.disableTypeChecked],
  },
  prettier,
);
