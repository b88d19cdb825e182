INSERT INTO events (stream, revision, id, type, data)
VALUES ('dossier-' || gen_random_uuid(), 0, gen_random_uuid(), 'DossierReceived',
        '{"agency":"000.00.31.H56","service":"1.011442.000.00.00.H56","channel":"online","received_at":"2019-03-04T08:00:00+07:00","due_at":"2019-03-11T17:00:00+07:00"}');
